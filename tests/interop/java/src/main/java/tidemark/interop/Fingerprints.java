package tidemark.interop;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.apache.avro.SchemaNormalization;

/**
 * {@code Fingerprints DIR}: for every {@code .avsc} in DIR (sorted by file name) prints
 *
 * <pre>file TAB 0x&lt;CRC-64-AVRO as a big-endian long&gt; TAB &lt;the 8 single-object header
 * bytes, little-endian, space-separated hex&gt; TAB &lt;Parsing Canonical Form&gt;</pre>
 *
 * as computed by Apache Avro's {@link SchemaNormalization}.
 */
public final class Fingerprints {
  private Fingerprints() {}

  public static void main(String[] args) {
    if (args.length != 1 || args[0].equals("--help") || args[0].equals("-h")) {
      System.err.println("usage: Fingerprints DIR");
      System.exit(args.length == 1 ? 0 : 2);
    }
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    try {
      for (Schemas.Entry e : Schemas.load(Path.of(args[0]))) {
        long fp = SchemaNormalization.parsingFingerprint64(e.schema);
        StringBuilder le = new StringBuilder();
        for (int i = 0; i < 8; i++) {
          if (i > 0) {
            le.append(' ');
          }
          le.append(String.format("%02x", (fp >>> (8 * i)) & 0xff));
        }
        out.print(
            e.file
                + "\t"
                + Schemas.hex(fp)
                + "\t"
                + le
                + "\t"
                + SchemaNormalization.toParsingForm(e.schema)
                + "\n");
      }
      out.flush();
    } catch (Exception e) {
      out.flush();
      System.err.println("Fingerprints: error: " + e);
      System.exit(1);
    }
  }
}
