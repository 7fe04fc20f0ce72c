package tidemark.interop;

import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Collection;
import java.util.Map;
import org.apache.avro.LogicalTypes;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericEnumSymbol;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.util.Utf8;

/**
 * Renders decoded Avro values as JSON exactly the way Python's
 * {@code json.dumps(obj, ensure_ascii=False)} does with its default separators
 * ({@code ", "} and {@code ": "}), so that the Java and Python consumers print
 * byte-identical lines:
 *
 * <ul>
 *   <li>record: object by field name, in schema order</li>
 *   <li>union: the branch's rendering (null: null)</li>
 *   <li>decimal (BigDecimal): a string, {@code toPlainString()} (keeps the scale); more digits
 *       than the schema's precision is an error</li>
 *   <li>timestamp-millis (Instant): integer epoch milliseconds</li>
 *   <li>int, long: integer; boolean: true/false; string, enum: string; array: array;
 *       map: object</li>
 *   <li>bytes, fixed: a string of one char per byte (U+0000..U+00FF, as in Avro's JSON
 *       encoding)</li>
 *   <li>float, double: refused (the two languages print them differently)</li>
 * </ul>
 */
final class Json {
  private Json() {}

  private static final char[] HEX = "0123456789abcdef".toCharArray();

  /** Appends {@code s} as a JSON string, escaped like Python's json with ensure_ascii=False. */
  static void string(StringBuilder out, CharSequence s) {
    out.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"':
          out.append("\\\"");
          break;
        case '\\':
          out.append("\\\\");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        case '\b':
          out.append("\\b");
          break;
        case '\f':
          out.append("\\f");
          break;
        default:
          if (c < 0x20) {
            out.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xf]);
          } else {
            out.append(c);
          }
      }
    }
    out.append('"');
  }

  /**
   * Appends a decoded Avro value (GenericData with decimal and timestamp-millis conversions),
   * guided by its schema: unions are resolved with {@code model}, and a decimal with more digits
   * than its schema's precision is refused (as fastavro refuses it) rather than printed.
   */
  static void value(StringBuilder out, GenericData model, Schema schema, Object v) {
    switch (schema.getType()) {
      case UNION:
        value(out, model, schema.getTypes().get(model.resolveUnion(schema, v)), v);
        return;
      case RECORD:
        if (v instanceof GenericRecord) {
          GenericRecord r = (GenericRecord) v;
          out.append('{');
          boolean first = true;
          for (Schema.Field f : schema.getFields()) {
            if (!first) {
              out.append(", ");
            }
            first = false;
            string(out, f.name());
            out.append(": ");
            value(out, model, f.schema(), r.get(f.pos()));
          }
          out.append('}');
          return;
        }
        break;
      case ARRAY:
        if (v instanceof Collection) {
          out.append('[');
          boolean first = true;
          for (Object item : (Collection<?>) v) {
            if (!first) {
              out.append(", ");
            }
            first = false;
            value(out, model, schema.getElementType(), item);
          }
          out.append(']');
          return;
        }
        break;
      case MAP:
        if (v instanceof Map) {
          out.append('{');
          boolean first = true;
          for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
            if (!first) {
              out.append(", ");
            }
            first = false;
            string(out, e.getKey().toString());
            out.append(": ");
            value(out, model, schema.getValueType(), e.getValue());
          }
          out.append('}');
          return;
        }
        break;
      case BYTES:
      case FIXED:
        if (v instanceof BigDecimal && schema.getLogicalType() instanceof LogicalTypes.Decimal) {
          LogicalTypes.Decimal d = (LogicalTypes.Decimal) schema.getLogicalType();
          BigDecimal bd = (BigDecimal) v;
          if (bd.precision() > d.getPrecision()) {
            throw new IllegalArgumentException(
                "decimal "
                    + bd.toPlainString()
                    + " has "
                    + bd.precision()
                    + " digits, more than its schema's precision "
                    + d.getPrecision());
          }
        }
        break;
      default:
        break;
    }
    scalar(out, v);
  }

  private static void scalar(StringBuilder out, Object v) {
    if (v == null) {
      out.append("null");
    } else if (v instanceof BigDecimal) {
      string(out, ((BigDecimal) v).toPlainString());
    } else if (v instanceof Instant) {
      out.append(((Instant) v).toEpochMilli());
    } else if (v instanceof Integer || v instanceof Long) {
      out.append(v.toString());
    } else if (v instanceof Boolean) {
      out.append(((Boolean) v) ? "true" : "false");
    } else if (v instanceof Utf8) {
      // Utf8.toString() would replace malformed UTF-8 silently: decode strictly instead.
      Utf8 u = (Utf8) v;
      try {
        string(
            out,
            StandardCharsets.UTF_8
                .newDecoder()
                .decode(ByteBuffer.wrap(u.getBytes(), 0, u.getByteLength())));
      } catch (CharacterCodingException e) {
        throw new IllegalArgumentException("string is not valid UTF-8: " + e, e);
      }
    } else if (v instanceof CharSequence) {
      string(out, (CharSequence) v);
    } else if (v instanceof GenericEnumSymbol) {
      string(out, v.toString());
    } else if (v instanceof ByteBuffer) {
      ByteBuffer b = ((ByteBuffer) v).duplicate();
      byte[] bytes = new byte[b.remaining()];
      b.get(bytes);
      latin1(out, bytes);
    } else if (v instanceof GenericFixed) {
      latin1(out, ((GenericFixed) v).bytes());
    } else {
      throw new IllegalArgumentException(
          "no JSON rendering for a decoded value of type "
              + v.getClass().getName()
              + " (float/double and unregistered logical types are not supported)");
    }
  }

  private static void latin1(StringBuilder out, byte[] bytes) {
    StringBuilder s = new StringBuilder(bytes.length);
    for (byte x : bytes) {
      s.append((char) (x & 0xff));
    }
    string(out, s);
  }
}
