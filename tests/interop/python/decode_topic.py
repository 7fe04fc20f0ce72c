#!/usr/bin/env python3
"""Independent Python consumer for tidemark's interop tests.

  decode_topic.py --bootstrap HOST:PORT --topic T --format single-object --schemas DIR
  decode_topic.py --bootstrap HOST:PORT --topic T --format confluent --registry URL
  decode_topic.py fingerprints DIR

Reads T from the beginning to the end offsets it had at start (every partition,
isolation.level=read_committed) and prints one JSON line per record, sorted by
partition then offset, exactly as the Java tidemark.interop.DecodeTopic does:

  {"topic": T, "partition": P, "offset": O, "key": K, "writer": W, "schema_ref": S, "value": V}

single-object: Avro single-object encoding (C3 01, 8-byte little-endian CRC-64-AVRO
  fingerprint, datum), decoded with fastavro alone: the fingerprints are fastavro's own
  (to_parsing_canonical_form + fingerprint(..., "CRC-64-AVRO")) of the .avsc files of DIR.
confluent: 0x00, 4-byte big-endian schema id, datum; decoded by confluent-kafka's
  AvroDeserializer with a SchemaRegistryClient on URL (GET URL/schemas/ids/{id}).

K is the UTF-8 key or null, W the writer schema's full name, S "0x" + 16 hex digits
(fingerprint as a big-endian number) or the decimal schema id, V the record: decimals as
strings with the schema's scale, timestamp-millis as integer epoch milliseconds. Tombstones
print W, S and V as null; records with a "tidemark.control" header are skipped. Any value
that does not decode is fatal (exit 1, naming topic/partition/offset).

`fingerprints DIR` prints, for every .avsc of DIR sorted by file name:
  file TAB 0x<fingerprint, big-endian> TAB <the 8 header bytes, little-endian hex> TAB <PCF>
"""

import datetime
import decimal
import io
import json
import os
import sys
import time
import traceback
import uuid

import fastavro
import fastavro.schema

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
CONTROL_HEADER = "tidemark.control"


class DecodeError(Exception):
    pass


def fail(msg, code=1):
    print(f"decode_topic.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------- schemas / fingerprints


def load_schemas(directory):
    """[(file, parsed schema, parsing canonical form, 8 header bytes)] sorted by file name."""
    if not os.path.isdir(directory):
        raise DecodeError(f"not a directory: {directory}")
    files = sorted(
        f for f in os.listdir(directory) if f.endswith(".avsc") and os.path.isfile(os.path.join(directory, f))
    )
    if not files:
        raise DecodeError(f"no .avsc files in {directory}")
    out = []
    for f in files:
        path = os.path.join(directory, f)
        try:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
            parsed = fastavro.parse_schema(raw)
            pcf = fastavro.schema.to_parsing_canonical_form(raw)
        except Exception as e:  # noqa: BLE001 - report which file
            raise DecodeError(f"cannot parse {path}: {e!r}") from e
        # fastavro returns the CRC-64-AVRO fingerprint as the hex of its little-endian
        # bytes, i.e. exactly the 8 bytes single-object encoding writes.
        header = bytes.fromhex(fastavro.schema.fingerprint(pcf, "CRC-64-AVRO"))
        if len(header) != 8:
            raise DecodeError(f"{path}: unexpected fingerprint {header.hex()}")
        out.append((f, parsed, pcf, header))
    return out


def fp_hex(header):
    """'0x' + 16 hex digits of the 8 little-endian header bytes read as a number."""
    return "0x%016x" % int.from_bytes(header, "little")


def cmd_fingerprints(directory):
    out = []
    for f, _parsed, pcf, header in load_schemas(directory):
        out.append(f"{f}\t{fp_hex(header)}\t{' '.join('%02x' % b for b in header)}\t{pcf}\n")
    sys.stdout.write("".join(out))


# ---------------------------------------------------------------- rendering


def render(v):
    """A decoded value as the JSON-able value both consumers print (see module doc)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            raise DecodeError(f"naive datetime {v!r} (local-timestamp types are not supported)")
        td = v - EPOCH
        micros = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
        if micros % 1000:
            raise DecodeError(f"timestamp {v!r} is not a whole number of milliseconds")
        return micros // 1000
    if isinstance(v, dict):
        return {str(k): render(x) for k, x in v.items()}
    if isinstance(v, list):
        return [render(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("latin-1")
    raise DecodeError(
        f"no JSON rendering for a decoded value of type {type(v).__name__} "
        "(float/double and other logical types are not supported)"
    )


# ---------------------------------------------------------------- value decoders


class SingleObject:
    def __init__(self, directory):
        self.dir = directory
        self.by_header = {}
        for _f, parsed, _pcf, header in load_schemas(directory):
            self.by_header[header] = parsed

    def decode(self, v, _msg):
        if len(v) < 10 or v[0:2] != b"\xc3\x01":
            raise DecodeError(f"not Avro single-object encoded: {len(v)} bytes, starting {v[:10].hex(' ')}")
        header = bytes(v[2:10])
        schema = self.by_header.get(header)
        if schema is None:
            raise DecodeError(f"unknown schema fingerprint {fp_hex(header)} (not one of the .avsc in {self.dir})")
        bio = io.BytesIO(v[10:])
        value = fastavro.schemaless_reader(bio, schema, None)
        rest = len(v) - 10 - bio.tell()
        if rest:
            raise DecodeError(f"{rest} trailing byte(s) after the datum ({len(v)} bytes in all)")
        return schema["name"], fp_hex(header), value


class Confluent:
    def __init__(self, url):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        self.client = SchemaRegistryClient({"url": url})
        self.deserializer = AvroDeserializer(self.client)
        self.writers = {}  # id -> parsed writer schema

    def decode(self, v, msg):
        from confluent_kafka.serialization import MessageField, SerializationContext

        if len(v) < 5 or v[0] != 0:
            raise DecodeError(f"not Confluent-framed: {len(v)} bytes, starting {v[:10].hex(' ')}")
        schema_id = int.from_bytes(v[1:5], "big")
        # The value, as a user's DeserializingConsumer would get it.
        ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
        value = self.deserializer(v, ctx)
        # The writer's name, and a check that the datum fills the value exactly (the
        # deserializer does not look at what is left after the datum).
        parsed = self.writers.get(schema_id)
        if parsed is None:
            registered = self.client.get_schema(schema_id)
            if registered.schema_type not in (None, "AVRO"):
                raise DecodeError(f"schema {schema_id} is {registered.schema_type}, not AVRO")
            parsed = fastavro.parse_schema(json.loads(registered.schema_str))
            self.writers[schema_id] = parsed
        bio = io.BytesIO(v[5:])
        fastavro.schemaless_reader(bio, parsed, None)
        rest = len(v) - 5 - bio.tell()
        if rest:
            raise DecodeError(f"{rest} trailing byte(s) after the datum ({len(v)} bytes in all)")
        name = parsed["name"] if isinstance(parsed, dict) else str(parsed)
        return name, str(schema_id), value


# ---------------------------------------------------------------- consumer


def strict_decimals():
    """Make fastavro's decimal reading fail instead of rounding a value that has more digits
    than the schema's precision (Java would print it exactly: fail loudly, never differ)."""
    for modname in ("fastavro._read", "fastavro._logical_readers", "fastavro._logical_readers_py"):
        mod = sys.modules.get(modname)
        if mod is None:
            try:
                mod = __import__(modname, fromlist=["decimal_context"])
            except ImportError:
                continue
        ctx = getattr(mod, "decimal_context", None)
        if isinstance(ctx, decimal.Context):
            ctx.traps[decimal.Inexact] = True


def consume(bootstrap, topic, decoder, timeout):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # required by the client; assign() joins no group and nothing is committed
            "group.id": f"tidemark-interop-py-{uuid.uuid4()}",
            "client.id": "tidemark-interop-python",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
        }
    )
    deadline = time.monotonic() + timeout
    lines = []
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise DecodeError(f"topic {topic} does not exist (no partitions) at {bootstrap}: {t and t.error}")
        parts = sorted(t.partitions)
        end = {}
        pending = set()
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            end[p] = high
            if high > low:
                pending.add(p)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        while pending:
            if time.monotonic() > deadline:
                pos = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in pending])}
                detail = "; ".join(f"{topic}-{p} position {pos.get(p)} < end {end[p]}" for p in sorted(pending))
                raise DecodeError(f"timed out after {timeout} s before reaching the end: {detail}")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # the end of what read_committed can see now (>= the end at start)
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(err)
            p, off = msg.partition(), msg.offset()
            if off + 1 >= end[p]:
                pending.discard(p)
            if off >= end[p]:
                continue  # written after we started
            headers = msg.headers() or []
            if any(k == CONTROL_HEADER for k, _ in headers):
                continue
            try:
                key = msg.key()
                value = msg.value()
                line = {
                    "topic": msg.topic(),
                    "partition": p,
                    "offset": off,
                    "key": None if key is None else key.decode("utf-8"),
                }
                if value is None:
                    line.update(writer=None, schema_ref=None, value=None)
                else:
                    writer, ref, decoded = decoder.decode(value, msg)
                    line.update(writer=writer, schema_ref=ref, value=render(decoded))
                text = json.dumps(line, ensure_ascii=False)
            except Exception as e:  # noqa: BLE001 - every failure is fatal, with its place
                traceback.print_exc(file=sys.stderr)
                n = 0 if msg.value() is None else len(msg.value())
                raise DecodeError(f"cannot decode record {topic}/{p}@{off} ({n} value bytes): {e!r}") from e
            lines.append((p, off, text))
    finally:
        consumer.close()
    lines.sort(key=lambda x: (x[0], x[1]))
    return [text for _p, _o, text in lines]


def parse_args(argv):
    opts = {}
    i = 0
    allowed = {"bootstrap", "topic", "format", "schemas", "registry", "timeout"}
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if not a.startswith("--") or a[2:] not in allowed or i + 1 >= len(argv):
            fail(f"bad argument {a} (see --help)", 2)
        opts[a[2:]] = argv[i + 1]
        i += 2
    for k in ("bootstrap", "topic", "format"):
        if k not in opts:
            fail("--bootstrap, --topic and --format are required (see --help)", 2)
    return opts


def main(argv):
    sys.stdout.reconfigure(encoding="utf-8", newline="\n")
    if argv and argv[0] == "fingerprints":
        if len(argv) != 2:
            fail("usage: decode_topic.py fingerprints DIR", 2)
        try:
            cmd_fingerprints(argv[1])
        except DecodeError as e:
            fail(str(e))
        return
    opts = parse_args(argv)
    timeout = float(opts.get("timeout", "120"))
    try:
        if opts["format"] == "single-object":
            if "schemas" not in opts:
                fail("--format single-object needs --schemas DIR", 2)
            decoder = SingleObject(opts["schemas"])
        elif opts["format"] == "confluent":
            if "registry" not in opts:
                fail("--format confluent needs --registry URL", 2)
            decoder = Confluent(opts["registry"])
        else:
            fail(f"--format must be single-object or confluent, not {opts['format']}", 2)
        strict_decimals()
        lines = consume(opts["bootstrap"], opts["topic"], decoder, timeout)
    except Exception as e:  # noqa: BLE001
        if not isinstance(e, DecodeError):
            traceback.print_exc(file=sys.stderr)
        fail(str(e) if isinstance(e, DecodeError) else repr(e))
    sys.stdout.write("".join(t + "\n" for t in lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
