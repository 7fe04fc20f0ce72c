package tidemark.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads a Kafka topic from the beginning to the end offsets it had at start (every partition,
 * read_committed), decodes every record value with Apache Avro and prints one JSON line per
 * record, sorted by partition then offset:
 *
 * <pre>{"topic": T, "partition": P, "offset": O, "key": K, "writer": W, "schema_ref": S, "value": V}</pre>
 *
 * K is the UTF-8 key or null; W the writer schema's full name; S the fingerprint (0x + 16 hex
 * digits) for single-object values or the decimal schema id for confluent values; V the decoded
 * record (see {@link Json}). Tombstones print W, S and V as null. Records with a
 * {@code tidemark.control} header are skipped. A value that cannot be decoded is fatal.
 */
public final class DecodeTopic {
  private DecodeTopic() {}

  static final String USAGE =
      String.join(
          "\n",
          "usage: DecodeTopic --bootstrap HOST:PORT --topic T --format single-object --schemas DIR"
              + " [--timeout SECONDS]",
          "       DecodeTopic --bootstrap HOST:PORT --topic T --format confluent --registry URL"
              + " [--timeout SECONDS]",
          "",
          "Reads T from the beginning to the end offsets it had at start (all partitions,",
          "isolation.level=read_committed) and prints one JSON line per record to stdout.",
          "single-object: Avro single-object encoding, schemas from the .avsc files of DIR.",
          "confluent: 0x00 + 4-byte big-endian schema id + datum, schema from",
          "           GET URL/schemas/ids/{id} (a Confluent-compatible registry).",
          "--timeout: give up (exit 1) if the end is not reached in time (default 120).");

  /** Thrown for a record that cannot be decoded; the message names topic/partition/offset. */
  static final class DecodeFailure extends RuntimeException {
    DecodeFailure(String msg, Throwable cause) {
      super(msg, cause);
    }
  }

  interface ValueDecoder {
    /** Appends {@code "writer": W, "schema_ref": S, "value": V} for a non-null value. */
    void decode(byte[] value, StringBuilder out) throws Exception;
  }

  static GenericData model() {
    GenericData model = new GenericData();
    model.addLogicalTypeConversion(new Conversions.DecimalConversion());
    model.addLogicalTypeConversion(new TimeConversions.TimestampMillisConversion());
    return model;
  }

  static void tail(
      StringBuilder out, GenericData model, Schema writer, String schemaRef, Object value) {
    out.append("\"writer\": ");
    Json.string(out, writer.getFullName());
    out.append(", \"schema_ref\": ");
    Json.string(out, schemaRef);
    out.append(", \"value\": ");
    Json.value(out, model, writer, value);
  }

  /** Avro single-object encoding, decoded with BinaryMessageDecoder over a SchemaStore.Cache. */
  static final class SingleObject implements ValueDecoder {
    private final GenericData model = model();
    private final SchemaStore.Cache cache = new SchemaStore.Cache();
    private final Map<Long, BinaryMessageDecoder<Object>> decoders = new HashMap<>();
    private final String dir;

    SingleObject(Path dir) throws IOException {
      this.dir = dir.toString();
      for (Schemas.Entry e : Schemas.load(dir)) {
        cache.addSchema(e.schema);
      }
    }

    @Override
    public void decode(byte[] v, StringBuilder out) throws Exception {
      if (v.length < 10 || (v[0] & 0xff) != 0xc3 || (v[1] & 0xff) != 0x01) {
        throw new IOException(
            "not Avro single-object encoded: "
                + v.length
                + " bytes, starting "
                + firstBytes(v));
      }
      long fp = ByteBuffer.wrap(v, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
      Schema writer = cache.findByFingerprint(fp);
      if (writer == null) {
        throw new IOException(
            "unknown schema fingerprint " + Schemas.hex(fp) + " (not one of the .avsc in " + dir + ")");
      }
      // Reader schema = writer schema: the record is printed as written.
      BinaryMessageDecoder<Object> decoder =
          decoders.computeIfAbsent(fp, k -> new BinaryMessageDecoder<>(model, writer, cache));
      ByteArrayInputStream in = new ByteArrayInputStream(v);
      Object value = decoder.decode(in, null);
      if (in.available() != 0) {
        throw new IOException(
            in.available() + " trailing byte(s) after the datum (" + v.length + " bytes in all)");
      }
      tail(out, model, writer, Schemas.hex(fp), value);
    }
  }

  /** Confluent wire format: 0x00, 4-byte big-endian schema id, datum. */
  static final class Confluent implements ValueDecoder {
    private final GenericData model = model();
    private final String registry;
    private final HttpClient http =
        HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private final ObjectMapper json = new ObjectMapper();
    private final Map<Integer, Schema> schemas = new HashMap<>();
    private final Map<Integer, GenericDatumReader<Object>> readers = new HashMap<>();

    Confluent(String registry) {
      this.registry = registry.replaceAll("/+$", "");
    }

    private Schema fetch(int id) throws IOException, InterruptedException {
      Schema s = schemas.get(id);
      if (s != null) {
        return s;
      }
      String url = registry + "/schemas/ids/" + Integer.toUnsignedString(id);
      HttpRequest req =
          HttpRequest.newBuilder(URI.create(url))
              .timeout(Duration.ofSeconds(30))
              .header("Accept", "application/vnd.schemaregistry.v1+json, application/json")
              .GET()
              .build();
      HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() != 200) {
        throw new IOException("GET " + url + ": HTTP " + resp.statusCode() + ": " + resp.body());
      }
      JsonNode body = json.readTree(resp.body());
      JsonNode type = body.get("schemaType");
      if (type != null && !type.isNull() && !type.asText().equals("AVRO")) {
        throw new IOException("GET " + url + ": schemaType " + type.asText() + ", not AVRO");
      }
      JsonNode text = body.get("schema");
      if (text == null || !text.isTextual()) {
        throw new IOException("GET " + url + ": no \"schema\" string in " + resp.body());
      }
      s = new Schema.Parser().parse(text.asText());
      schemas.put(id, s);
      return s;
    }

    @Override
    public void decode(byte[] v, StringBuilder out) throws Exception {
      if (v.length < 5 || v[0] != 0) {
        throw new IOException(
            "not Confluent-framed: " + v.length + " bytes, starting " + firstBytes(v));
      }
      int id = ByteBuffer.wrap(v, 1, 4).getInt();
      Schema writer = fetch(id);
      GenericDatumReader<Object> reader =
          readers.computeIfAbsent(id, k -> new GenericDatumReader<>(writer, writer, model));
      BinaryDecoder in = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, null);
      Object value = reader.read(null, in);
      if (!in.isEnd()) {
        throw new IOException("trailing byte(s) after the datum (" + v.length + " bytes in all)");
      }
      tail(out, model, writer, Integer.toUnsignedString(id), value);
    }
  }

  static String firstBytes(byte[] v) {
    StringBuilder s = new StringBuilder();
    for (int i = 0; i < Math.min(v.length, 10); i++) {
      s.append(String.format("%02x ", v[i]));
    }
    return s.toString().trim();
  }

  static String key(byte[] k) throws CharacterCodingException {
    if (k == null) {
      return null;
    }
    return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(k)).toString();
  }

  private static final class Line {
    final int partition;
    final long offset;
    final String text;

    Line(int partition, long offset, String text) {
      this.partition = partition;
      this.offset = offset;
      this.text = text;
    }
  }

  public static void main(String[] args) {
    Map<String, String> opt = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.equals("--help") || a.equals("-h")) {
        System.out.println(USAGE);
        System.exit(0);
      }
      if (!a.startsWith("--") || i + 1 >= args.length) {
        die("bad argument " + a + "\n" + USAGE, 2);
      }
      opt.put(a.substring(2), args[++i]);
    }
    for (String k : opt.keySet()) {
      if (!Set.of("bootstrap", "topic", "format", "schemas", "registry", "timeout").contains(k)) {
        die("unknown option --" + k + "\n" + USAGE, 2);
      }
    }
    String bootstrap = opt.get("bootstrap");
    String topic = opt.get("topic");
    String format = opt.get("format");
    if (bootstrap == null || topic == null || format == null) {
      die("--bootstrap, --topic and --format are required\n" + USAGE, 2);
    }
    long timeoutMs = 120_000;
    if (opt.containsKey("timeout")) {
      timeoutMs = (long) (Double.parseDouble(opt.get("timeout")) * 1000);
    }
    ValueDecoder decoder = null;
    try {
      if (format.equals("single-object")) {
        if (opt.get("schemas") == null) {
          die("--format single-object needs --schemas DIR", 2);
        }
        decoder = new SingleObject(Path.of(opt.get("schemas")));
      } else if (format.equals("confluent")) {
        if (opt.get("registry") == null) {
          die("--format confluent needs --registry URL", 2);
        }
        decoder = new Confluent(opt.get("registry"));
      } else {
        die("--format must be single-object or confluent, not " + format, 2);
      }
      List<Line> lines = consume(bootstrap, topic, decoder, timeoutMs);
      PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
      for (Line l : lines) {
        out.print(l.text);
        out.print('\n');
      }
      out.flush();
      if (out.checkError()) {
        die("writing to stdout failed", 1);
      }
      System.exit(0);
    } catch (DecodeFailure e) {
      System.err.println("DecodeTopic: error: " + e.getMessage());
      e.getCause().printStackTrace(System.err);
      System.exit(1);
    } catch (Exception e) {
      System.err.println("DecodeTopic: error: " + e);
      e.printStackTrace(System.err);
      System.exit(1);
    }
  }

  static void die(String msg, int code) {
    System.err.println("DecodeTopic: error: " + msg);
    System.exit(code);
  }

  static List<Line> consume(String bootstrap, String topic, ValueDecoder decoder, long timeoutMs)
      throws Exception {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, "tidemark-interop-java");
    long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
    List<Line> lines = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
      List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofMillis(timeoutMs));
      if (infos == null || infos.isEmpty()) {
        throw new IOException("topic " + topic + " does not exist (no partitions) at " + bootstrap);
      }
      List<TopicPartition> parts =
          infos.stream()
              .map(i -> new TopicPartition(topic, i.partition()))
              .sorted(Comparator.comparingInt(TopicPartition::partition))
              .collect(Collectors.toList());
      // With read_committed these are the last stable offsets.
      Map<TopicPartition, Long> end = consumer.endOffsets(parts, Duration.ofMillis(timeoutMs));
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      Set<TopicPartition> pending = new HashSet<>();
      for (TopicPartition tp : parts) {
        if (consumer.position(tp, Duration.ofMillis(timeoutMs)) < end.get(tp)) {
          pending.add(tp);
        }
      }
      consumer.pause(
          parts.stream().filter(tp -> !pending.contains(tp)).collect(Collectors.toList()));
      while (!pending.isEmpty()) {
        if (System.nanoTime() > deadline) {
          StringBuilder s = new StringBuilder();
          for (TopicPartition tp : pending) {
            s.append(
                String.format(
                    " %s position %d < end %d;", tp, consumer.position(tp), end.get(tp)));
          }
          throw new IOException(
              "timed out after " + timeoutMs + " ms before reaching the end:" + s);
        }
        ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
        for (ConsumerRecord<byte[], byte[]> r : recs) {
          TopicPartition tp = new TopicPartition(r.topic(), r.partition());
          if (r.offset() >= end.get(tp)) {
            continue; // written after we started
          }
          if (r.headers().lastHeader("tidemark.control") != null) {
            continue;
          }
          StringBuilder out = new StringBuilder();
          try {
            out.append("{\"topic\": ");
            Json.string(out, r.topic());
            out.append(", \"partition\": ").append(r.partition());
            out.append(", \"offset\": ").append(r.offset());
            out.append(", \"key\": ");
            String k = key(r.key());
            if (k == null) {
              out.append("null");
            } else {
              Json.string(out, k);
            }
            out.append(", ");
            if (r.value() == null) {
              out.append("\"writer\": null, \"schema_ref\": null, \"value\": null");
            } else {
              decoder.decode(r.value(), out);
            }
            out.append('}');
          } catch (Exception e) {
            throw new DecodeFailure(
                String.format(
                    "cannot decode record %s/%d@%d (%d value bytes): %s",
                    r.topic(),
                    r.partition(),
                    r.offset(),
                    r.value() == null ? 0 : r.value().length,
                    e),
                e);
          }
          lines.add(new Line(r.partition(), r.offset(), out.toString()));
        }
        List<TopicPartition> done = new ArrayList<>();
        for (TopicPartition tp : pending) {
          if (consumer.position(tp) >= end.get(tp)) {
            done.add(tp);
          }
        }
        pending.removeAll(done);
        consumer.pause(done);
      }
    }
    lines.sort(
        Comparator.<Line>comparingInt(l -> l.partition).thenComparingLong(l -> l.offset));
    return lines;
  }
}
