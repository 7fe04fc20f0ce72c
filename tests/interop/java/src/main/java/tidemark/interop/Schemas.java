package tidemark.interop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.avro.Schema;

/** The {@code .avsc} files of a directory, sorted by file name, each parsed on its own. */
final class Schemas {
  private Schemas() {}

  static final class Entry {
    final String file;
    final Schema schema;

    Entry(String file, Schema schema) {
      this.file = file;
      this.schema = schema;
    }
  }

  static List<Entry> load(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      throw new IOException("not a directory: " + dir);
    }
    List<Path> files;
    try (Stream<Path> s = Files.list(dir)) {
      files =
          s.filter(p -> p.getFileName().toString().endsWith(".avsc") && Files.isRegularFile(p))
              .sorted((a, b) -> a.getFileName().toString().compareTo(b.getFileName().toString()))
              .collect(Collectors.toList());
    }
    if (files.isEmpty()) {
      throw new IOException("no .avsc files in " + dir);
    }
    List<Entry> out = new ArrayList<>();
    for (Path p : files) {
      try {
        out.add(new Entry(p.getFileName().toString(), new Schema.Parser().parse(p.toFile())));
      } catch (RuntimeException e) {
        throw new IOException("cannot parse " + p + ": " + e, e);
      }
    }
    return out;
  }

  /** 16 lowercase hex digits of a fingerprint read as a big-endian long, with 0x. */
  static String hex(long fp) {
    return String.format("0x%016x", fp);
  }
}
