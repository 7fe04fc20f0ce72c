#!/usr/bin/env python3
"""ClickHouse (chdb, in process) reads tidemark's Confluent-framed topics, for the interop tests.

  clickhouse_read.py --bootstrap B --registry URL --workdir DIR infer TOPIC...
  clickhouse_read.py --bootstrap B --registry URL --workdir DIR sql FILE DOC_TOPIC=TOPIC...

Both read each topic as ClickHouse's Kafka engine would (every partition from the beginning to
its end offsets, isolation.level=read_committed, records without a value skipped) and hand the
values, unchanged, to ClickHouse's own `AvroConfluent` reader, which resolves each schema id
through format_avro_schema_registry_url.

infer: the columns are inferred from the registry's schema; prints one JSON line per record.
sql:   runs the statements of FILE (docs/consuming.md's ClickHouse DDL) in order, as printed,
       except each `ENGINE = Kafka SETTINGS ...` table: chdb cannot run the Kafka engine, so that
       table becomes a Null table with `_partition` and `_offset` columns (MATERIALIZED: like
       the Kafka engine's virtual columns, not in `SELECT *`), and the topic its
       kafka_topic_list names (DOC_TOPIC, read from TOPIC) is inserted into it with the table's
       own column types, kafka_format and registry setting (its host swapped for URL). Their
       materialized views fill the target tables; prints `SELECT * FROM <target> FINAL`.

Lines: {"table", "partition", "offset", "key", "writer": null, "schema_ref": null, "value"}, the
value as ClickHouse prints it in JSON (decimals quoted with their scale, DateTime64 as
"seconds.millis", 64-bit integers as numbers); the sql targets' kafka_partition / kafka_offset
columns move out of the value. `table` is the topic (infer; with the record's key) or the
target table (sql; key null).
"""

import argparse
import json
import os
import re
import sys

import chdb.session
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

OUTPUT = {
    "output_format_json_quote_decimals": 1,
    "output_format_decimal_trailing_zeros": 1,
    "output_format_json_quote_64bit_integers": 0,
    "date_time_output_format": "unix_timestamp",
}


def fail(msg):
    print(f"clickhouse_read.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def consume(bootstrap, topic, workdir):
    """Writes the topic's values, concatenated, to a file, and returns it with each row's
    (key, partition, offset), in file order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "tidemark-interop-clickhouse",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        fail(f"no topic {topic}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    pending, rows = set(meta.partitions), []
    path = os.path.join(workdir, f"{topic}.values")
    with open(path, "wb") as values:
        while pending:
            m = consumer.poll(30)
            if m is None:
                fail(f"{topic}: nothing within 30 s")
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    fail(f"{topic}: {m.error()}")
                pending.discard(m.partition())
                continue
            if not m.value():
                continue  # a tombstone or a control record: the Kafka engine skips it
            values.write(m.value())
            rows.append((m.key().decode() if m.key() is not None else None, m.partition(), m.offset()))
    consumer.close()
    return path, rows


def settings(extra):
    return " SETTINGS " + ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in extra.items())


def query_lines(session, sql):
    text = session.query(sql, "JSONEachRow").bytes().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def infer(session, args, topic):
    """Prints the topic's records as ClickHouse reads them with the columns it infers."""
    path, rows = consume(args.bootstrap, topic, args.workdir)
    got = query_lines(
        session,
        f"SELECT *, _row_number FROM file('{path}', 'AvroConfluent')"
        + settings({"format_avro_schema_registry_url": args.registry, **OUTPUT}),
    )
    if len(got) != len(rows):
        fail(f"{topic}: ClickHouse read {len(got)} rows of {len(rows)} values")
    for value in got:
        key, partition, offset = rows[value.pop("_row_number")]
        print(json.dumps({"table": topic, "partition": partition, "offset": offset, "key": key,
                          "writer": None, "schema_ref": None, "value": value}, ensure_ascii=False))


KAFKA_TABLE = re.compile(
    r"CREATE TABLE (?P<name>\w+)\s*\((?P<columns>.*)\)\s*ENGINE = Kafka\s+SETTINGS\s+(?P<settings>.*)",
    re.S,
)
SETTING = re.compile(r"(\w+)\s*=\s*'([^']*)'")
MV_TARGET = re.compile(r"CREATE MATERIALIZED VIEW \w+ TO (\w+)")


def run_sql(session, args, path, topic_map):
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("--"))
    statements = [s.strip() for s in text.split(";") if s.strip()]
    queues, targets = [], []
    for stmt in statements:
        kafka = KAFKA_TABLE.fullmatch(stmt)
        if kafka is None:
            session.query(stmt)
            target = MV_TARGET.match(stmt)
            if target:
                targets.append(target.group(1))
            continue
        conf = dict(SETTING.findall(kafka.group("settings")))
        for need in ("kafka_broker_list", "kafka_topic_list", "kafka_group_name", "kafka_format",
                     "format_avro_schema_registry_url"):
            if need not in conf:
                fail(f"{kafka.group('name')}: the Kafka table sets no {need}")
        if conf["kafka_topic_list"] not in topic_map:
            fail(f"{kafka.group('name')}: topic {conf['kafka_topic_list']} not mapped on the command line")
        # The registry's path as printed, on this test's registry host.
        printed = re.match(r"https?://[^/]+(/.*)?$", conf["format_avro_schema_registry_url"])
        host = re.match(r"https?://[^/]+", args.registry).group(0)
        registry = host + (printed.group(1) or "")
        columns = kafka.group("columns").strip()
        # Like the Kafka engine's virtual columns, MATERIALIZED ones are not in `SELECT *`.
        session.query(
            f"CREATE TABLE {kafka.group('name')} ({columns}, "
            "_partition UInt64 MATERIALIZED 0, _offset UInt64 MATERIALIZED 0) ENGINE = Null"
        )
        queues.append((kafka.group("name"), topic_map[conf["kafka_topic_list"]], columns, conf["kafka_format"], registry))
    for name, topic, columns, fmt, registry in queues:
        values, rows = consume(args.bootstrap, topic, args.workdir)
        meta = os.path.join(args.workdir, f"{topic}.rows")
        with open(meta, "w", encoding="utf-8") as f:
            for i, (_, partition, offset) in enumerate(rows):
                f.write(json.dumps({"row": i, "partition": partition, "offset": offset}) + "\n")
        session.query(
            f"INSERT INTO {name} ({', '.join(top_level(columns))}, _partition, _offset) "
            f"SELECT {', '.join('v.' + n for n in top_level(columns))}, m.partition, m.offset "
            f"FROM file('{values}', '{fmt}', $${columns}$$) AS v "
            f"JOIN file('{meta}', 'JSONEachRow', 'row UInt64, partition UInt64, offset UInt64') AS m "
            f"ON v._row_number = m.row"
            + settings({"format_avro_schema_registry_url": registry, "insert_allow_materialized_columns": 1})
        )
    for table in targets:
        for row in query_lines(session, f"SELECT * FROM {table} FINAL" + settings(OUTPUT)):
            partition, offset = row.pop("kafka_partition"), row.pop("kafka_offset")
            print(json.dumps({"table": table, "partition": partition, "offset": offset, "key": None,
                              "writer": None, "schema_ref": None, "value": row}, ensure_ascii=False))


def top_level(columns):
    """The names of a column list's top-level columns (nested types may hold commas)."""
    names, depth, start = [], 0, 0
    for i, c in enumerate(columns + ","):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            names.append(columns[start:i].split()[0])
            start = i + 1
    return names


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True, help="the registry's Confluent API URL")
    p.add_argument("--workdir", required=True)
    sub = p.add_subparsers(dest="mode", required=True)
    i = sub.add_parser("infer")
    i.add_argument("topics", nargs="+", metavar="TOPIC")
    s = sub.add_parser("sql")
    s.add_argument("file")
    s.add_argument("topics", nargs="+", metavar="DOC_TOPIC=TOPIC")
    args = p.parse_args()
    session = chdb.session.Session()
    if args.mode == "infer":
        for topic in args.topics:
            infer(session, args, topic)
    else:
        run_sql(session, args, args.file, dict(t.split("=", 1) for t in args.topics))


if __name__ == "__main__":
    main()
