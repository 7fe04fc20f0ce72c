package tidemark.interop;

import java.io.IOException;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collection;
import java.util.Date;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.ConnectException;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;

/**
 * A Kafka Connect sink that appends what Connect handed it (after the converters and the
 * transforms) to a file, one JSON line a record in the interop consumers' shape plus the topic: {@code
 * {"topic", "partition", "offset", "key", "writer", "schema_ref", "logical", "value"}}, {@code writer}
 * being the Connect schema's name and {@code logical} its Decimal and Timestamp fields. The value is rendered from Connect's own data model, not from Avro:
 * a Connect {@code Decimal} as its plain text (scale kept), a Connect {@code Timestamp} as epoch
 * millis, a Struct as an object in schema order. So the test sees exactly what a JDBC or S3 sink
 * would be given.
 *
 * <p>Config: {@code file} (required), the output path.
 */
public final class JsonLinesSink extends SinkConnector {
  static final ConfigDef CONFIG =
      new ConfigDef()
          .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the JSON lines file");

  private Map<String, String> props;

  @Override
  public void start(Map<String, String> props) {
    CONFIG.parse(props);
    this.props = props;
  }

  @Override
  public Class<? extends Task> taskClass() {
    return Writer.class;
  }

  @Override
  public List<Map<String, String>> taskConfigs(int maxTasks) {
    return List.of(props); // one task: one file, appended in delivery order
  }

  @Override
  public void stop() {}

  @Override
  public ConfigDef config() {
    return CONFIG;
  }

  @Override
  public String version() {
    return "0";
  }

  /** The sink's one task. */
  public static final class Writer extends SinkTask {
    private OutputStream out;

    @Override
    public String version() {
      return "0";
    }

    @Override
    public void start(Map<String, String> props) {
      try {
        out =
            Files.newOutputStream(
                Path.of(props.get("file")), StandardOpenOption.CREATE, StandardOpenOption.APPEND);
      } catch (IOException e) {
        throw new ConnectException("cannot open " + props.get("file") + ": " + e, e);
      }
    }

    @Override
    public void put(Collection<SinkRecord> records) {
      StringBuilder lines = new StringBuilder();
      for (SinkRecord r : records) {
        lines.append("{\"topic\": ");
        Json.string(lines, r.topic());
        lines.append(", \"partition\": ").append(r.kafkaPartition());
        lines.append(", \"offset\": ").append(r.kafkaOffset()).append(", \"key\": ");
        if (r.key() == null) {
          lines.append("null");
        } else {
          Json.string(lines, r.key().toString());
        }
        lines.append(", \"writer\": ");
        if (r.valueSchema() == null || r.valueSchema().name() == null) {
          lines.append("null");
        } else {
          Json.string(lines, r.valueSchema().name());
        }
        lines.append(", \"schema_ref\": null, \"logical\": [");
        List<String> logical = new java.util.ArrayList<>();
        logicalPaths(r.valueSchema(), "", logical);
        for (int i = 0; i < logical.size(); i++) {
          if (i > 0) {
            lines.append(", ");
          }
          Json.string(lines, logical.get(i));
        }
        lines.append("], \"value\": ");
        connect(lines, r.valueSchema(), r.value(), "value");
        lines.append("}\n");
      }
      try {
        out.write(lines.toString().getBytes(StandardCharsets.UTF_8));
        out.flush();
      } catch (IOException e) {
        throw new ConnectException("cannot write: " + e, e);
      }
    }

    @Override
    public void stop() {
      try {
        if (out != null) {
          out.close();
        }
      } catch (IOException e) {
        throw new ConnectException("cannot close: " + e, e);
      }
    }
  }

  /**
   * Collects "path: Decimal|Timestamp" for every field of {@code schema} that Connect typed as
   * one of those logical types ({@code []} for an array's items), so that the test can tell a
   * Connect Timestamp from a plain long and a Decimal from a string.
   */
  static void logicalPaths(Schema schema, String path, List<String> out) {
    if (schema == null) {
      return;
    }
    if (Decimal.LOGICAL_NAME.equals(schema.name())) {
      out.add(path + ": Decimal");
    } else if (Timestamp.LOGICAL_NAME.equals(schema.name())) {
      out.add(path + ": Timestamp");
    } else if (schema.type() == Schema.Type.STRUCT) {
      for (Field f : schema.fields()) {
        logicalPaths(f.schema(), path.isEmpty() ? f.name() : path + "." + f.name(), out);
      }
    } else if (schema.type() == Schema.Type.ARRAY) {
      logicalPaths(schema.valueSchema(), path + "[]", out);
    }
  }

  /** Appends a Connect value, guided by its Connect schema. */
  static void connect(StringBuilder out, Schema schema, Object v, String path) {
    if (v == null) {
      out.append("null");
      return;
    }
    if (schema == null) {
      throw new ConnectException(path + ": a value without a Connect schema: " + v);
    }
    if (Decimal.LOGICAL_NAME.equals(schema.name())) {
      Json.string(out, ((BigDecimal) v).toPlainString());
      return;
    }
    if (Timestamp.LOGICAL_NAME.equals(schema.name())) {
      out.append(((Date) v).getTime());
      return;
    }
    switch (schema.type()) {
      case STRUCT:
        Struct s = (Struct) v;
        out.append('{');
        boolean first = true;
        for (Field f : schema.fields()) {
          if (!first) {
            out.append(", ");
          }
          first = false;
          Json.string(out, f.name());
          out.append(": ");
          connect(out, f.schema(), s.get(f), path + "." + f.name());
        }
        out.append('}');
        return;
      case ARRAY:
        out.append('[');
        int i = 0;
        for (Object item : (List<?>) v) {
          if (i > 0) {
            out.append(", ");
          }
          connect(out, schema.valueSchema(), item, path + "[" + i + "]");
          i++;
        }
        out.append(']');
        return;
      case STRING:
        Json.string(out, (String) v);
        return;
      case INT8:
      case INT16:
      case INT32:
      case INT64:
      case BOOLEAN:
        out.append(v);
        return;
      default:
        throw new ConnectException(
            path + ": the test does not render Connect type " + schema.type() + " (" + schema.name() + ")");
    }
  }
}
