package dev.kvq.runtime.djl;

import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.JniUtils;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;

/**
 * Adds the quantized-past entry to a TorchScript program of kvq's contract, the way the ONNX runtime rewrites a graph:
 * a scripted module keeps its program as source in the archive ({@code code/...py}), which {@code torch.jit.load}
 * compiles, so kvq adds two methods to the top-level class and a few functions beside it.
 *
 * <ul>
 *   <li>{@code forward_quantized(ints, buffers, refs, meta, T, R, B, t, staging, transfers) -> (logits, new_kv)}: the
 *       model's own {@code forward}, copied, with each layer's {@code past[2l]}, {@code past[2l + 1]} replaced by that
 *       layer's history dequantized just before the layer runs (so one layer's float K/V exists at a time), the
 *       attention mask built from per-sequence counts, and only the new tokens' K/V returned, as one flat float32
 *       tensor (layer-major, keys before values, each {@code [B, kvHeads, t, headDim]}). It first applies the pending
 *       {@code transfers}.</li>
 *   <li>{@code kvq_transfer(buffers, staging, transfers) -> int}: applies transfers alone (used when a buffer grows).
 *   </li>
 * </ul>
 *
 * <p>The history lives in uint8 buffers; {@code refs} holds, per past tensor in {@link
 * dev.kvq.generate.spi.QuantizedStep} order, its buffer index and byte offset; {@code meta} is {@code [dtype,
 * kvHeads, headDim, layers]} then, per layer and kind, the run count and 7 ints per run ({@link DjlQuantizedDecoder}).
 * A transfer is 7 ints: {@code [0, buffer, offset, pitch, width, height, stagingOffset]} copies {@code height} rows of
 * {@code width} bytes from {@code staging} (host memory, moved to the device once per call), or {@code [1, buffer,
 * offset, bytes, fromBuffer, fromOffset, 0]} copies within the device, and {@code [4, buffer, offset, pitch, width,
 * height, 0]} followed by {@code [5, fromBuffer, fromOffset, fromPitch, 0, 0, 0]} copies rows within the device.
 */
final class QuantizedPastProgram {
    static final String FORWARD = "forward_quantized";
    static final String TRANSFER = "kvq_transfer";
    /** Ints per transfer. */
    static final int TRANSFER_INTS = 7;

    private static final Pattern PAST_INDEX = Pattern.compile("(\\w+)\\[(\\d+)\\]");
    private static final Pattern PARAM = Pattern.compile("^\\s*(\\w+): ([\\w\\[\\]]+)[,)]");
    private static final Pattern RETURN = Pattern.compile("^    return \\((.+), (\\w+)\\)$");

    private QuantizedPastProgram() {
    }

    /** Whether the loaded program already has the entry. */
    static boolean has(PtSymbolBlock program) {
        List<String> methods = List.of(JniUtils.getMethodNames(program));
        return methods.contains(FORWARD) && methods.contains(TRANSFER);
    }

    /**
     * Copies {@code archive} to {@code target} with the entry added to its top-level class's source. Entries are
     * stored uncompressed, as PyTorch writes them; the class's debug-info file goes (its source ranges would no
     * longer match).
     */
    static void write(Path archive, int layers, Path target) {
        try (ZipFile zip = new ZipFile(archive.toFile())) {
            String top = topClass(zip, archive);
            int dot = top.lastIndexOf('.');
            String module = top.substring(0, dot);
            String codeFile = "code/" + module.replace('.', '/') + ".py";
            try (OutputStream file = Files.newOutputStream(target); ZipOutputStream out = new ZipOutputStream(file)) {
                boolean rewritten = false;
                for (ZipEntry e : java.util.Collections.list(zip.entries())) {
                    String name = e.getName();
                    if (name.endsWith("/" + codeFile + ".debug_pkl")) {
                        continue;
                    }
                    try (InputStream in = zip.getInputStream(e)) {
                        if (name.endsWith("/" + codeFile)) {
                            String source = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                            byte[] data = rewrite(source, module, top.substring(dot + 1), layers)
                                    .getBytes(StandardCharsets.UTF_8);
                            CRC32 crc = new CRC32();
                            crc.update(data);
                            out.putNextEntry(stored(name, data.length, crc.getValue()));
                            out.write(data);
                            rewritten = true;
                        } else {
                            out.putNextEntry(stored(name, e.getSize(), e.getCrc()));
                            in.transferTo(out);
                        }
                        out.closeEntry();
                    }
                }
                if (!rewritten) {
                    throw refuse(archive, "it holds no source of its top-level class " + top + " (" + codeFile + ")");
                }
            }
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write the quantized-past form of " + archive + " to " + target
                    + ": " + e.getMessage(), e);
        }
    }

    private static ZipEntry stored(String name, long size, long crc) {
        ZipEntry entry = new ZipEntry(name);
        entry.setMethod(ZipEntry.STORED);
        entry.setSize(size);
        entry.setCompressedSize(size);
        entry.setCrc(crc);
        return entry;
    }

    /** The qualified name of the pickled top-level module's class, from {@code data.pkl}'s first GLOBAL. */
    static String topClass(ZipFile zip, Path path) throws IOException {
        for (ZipEntry e : java.util.Collections.list(zip.entries())) {
            String name = e.getName();
            if (name.endsWith("/data.pkl") && name.indexOf('/') == name.lastIndexOf('/')) {
                try (InputStream in = zip.getInputStream(e)) {
                    return global(in, path);
                }
            }
        }
        throw refuse(path, "it has no data.pkl");
    }

    private static String global(InputStream in, Path path) throws IOException {
        byte[] head = in.readNBytes(512);
        // PROTO n, then GLOBAL 'module\nname\n'
        int at = head.length > 2 && (head[0] & 0xff) == 0x80 ? 2 : 0;
        if (at >= head.length || head[at] != 'c') {
            throw refuse(path, "its data.pkl does not start with the module's class");
        }
        String text = new String(head, at + 1, head.length - at - 1, StandardCharsets.ISO_8859_1);
        String[] parts = text.split("\n", 3);
        if (parts.length < 3 || !parts[0].startsWith("__torch__")) {
            throw refuse(path, "its data.pkl does not start with a scripted class");
        }
        return parts[0] + "." + parts[1];
    }

    /**
     * The source of module {@code module} with the entry added to class {@code className}, whose {@code forward} takes
     * {@code (input_ids, attention_mask, position_ids, past: List[Tensor])} and passes {@code past[2l], past[2l + 1]}
     * to layer {@code l}'s call, appending what the layer returns to the list it returns beside the logits.
     */
    static String rewrite(String source, String module, String className, int layers) {
        String where = "class " + module + "." + className;
        List<String> lines = new ArrayList<>(List.of(source.split("\n", -1)));
        int classLine = lines.indexOf("class " + className + "(Module):");
        if (classLine < 0) {
            throw refuse(where, "its source does not define it");
        }
        int def = -1;
        for (int i = classLine + 1; i < lines.size() && !isTopLevel(lines.get(i)); i++) {
            if (lines.get(i).startsWith("  def forward(self: ")) {
                def = i;
                break;
            }
        }
        if (def < 0) {
            throw refuse(where, className + " has no forward method");
        }
        List<String> params = new ArrayList<>();
        int body = def + 1;
        for (; body < lines.size(); body++) {
            Matcher m = PARAM.matcher(lines.get(body));
            if (m.find()) {
                params.add(m.group(1) + ":" + m.group(2));
            }
            if (lines.get(body).endsWith(":")) {
                body++;
                break;
            }
        }
        if (params.size() != 4 || !params.get(0).endsWith(":Tensor") || !params.get(1).endsWith(":Tensor")
                || !params.get(2).endsWith(":Tensor") || !params.get(3).endsWith(":List[Tensor]")) {
            throw refuse(where, className + ".forward takes " + params + ", not kvq's (input_ids, attention_mask, "
                    + "position_ids, past: List[Tensor])");
        }
        String inputIds = name(params.get(0));
        String mask = name(params.get(1));
        String positions = name(params.get(2));
        String past = name(params.get(3));
        int end = body;
        while (end < lines.size() && lines.get(end).startsWith("    ")) {
            end++;
        }
        List<String> forward = lines.subList(body, end);
        String q = module + ".";
        List<String> out = new ArrayList<>();
        out.add("  def " + FORWARD + "(self: " + module + "." + className + ",");
        out.add("    kvq_ints: Tensor,");
        out.add("    kvq_buffers: List[Tensor],");
        out.add("    kvq_refs: List[int],");
        out.add("    kvq_meta: List[int],");
        out.add("    kvq_T: int,");
        out.add("    kvq_R: int,");
        out.add("    kvq_B: int,");
        out.add("    kvq_t: int,");
        out.add("    kvq_staging: List[Tensor],");
        out.add("    kvq_transfers: List[int]) -> Tuple[Tensor, Tensor]:");
        out.add("    kvq_applied = " + q + "kvq_apply(kvq_buffers, kvq_staging, kvq_transfers)");
        out.add("    " + inputIds + ", " + mask + ", " + positions + ", " + past + " = " + q
                + "kvq_inputs(kvq_ints, kvq_meta, kvq_T, kvq_R, kvq_B, kvq_t)");
        out.add("    kvq_m = 4");
        out.add("    kvq_i = 0");
        String present = null;
        boolean[] seen = new boolean[2 * layers];
        int appends = 0;
        for (String line : forward) {
            Matcher ret = RETURN.matcher(line);
            if (ret.matches()) {
                present = ret.group(2);
                out.add("    return (torch.to(" + ret.group(1) + ", 6), " + q + "kvq_flat(" + present + "))");
                continue;
            }
            if (line.contains(".forward(") && line.contains(past + "[")) {
                Matcher m = PAST_INDEX.matcher(line);
                StringBuilder replaced = new StringBuilder();
                int layer = -1;
                while (m.find()) {
                    if (!m.group(1).equals(past)) {
                        m.appendReplacement(replaced, Matcher.quoteReplacement(m.group()));
                        continue;
                    }
                    int index = Integer.parseInt(m.group(2));
                    if (index >= 2 * layers || seen[index]) {
                        throw refuse(where, "its forward passes " + past + "[" + index + "] to a layer twice or "
                                + "beyond the " + layers + " layers of config.json");
                    }
                    seen[index] = true;
                    layer = index / 2;
                    m.appendReplacement(replaced, (index % 2 == 0 ? "kvq_k" : "kvq_v") + layer);
                }
                m.appendTail(replaced);
                out.add("    kvq_k" + layer + ", kvq_v" + layer + ", kvq_m, kvq_i = " + q
                        + "kvq_layer(kvq_buffers, kvq_refs, kvq_meta, kvq_m, kvq_i, kvq_T, kvq_R, kvq_B)");
                out.add(replaced.toString());
                continue;
            }
            out.add(line);
        }
        if (present == null) {
            throw refuse(where, className + ".forward does not end with return (logits, present)");
        }
        for (int i = 0; i < out.size(); i++) {
            String line = out.get(i);
            String append = "torch.append(" + present + ", ";
            int at = line.indexOf(append);
            if (at >= 0 && line.endsWith(")")) {
                String value = line.substring(at + append.length(), line.length() - 1);
                out.set(i, line.substring(0, at) + append + q + "kvq_new(" + value + ", kvq_t))");
                appends++;
            }
        }
        for (int i = 0; i < seen.length; i++) {
            if (!seen[i]) {
                throw refuse(where, className + ".forward does not pass " + past + "[" + i + "] to a layer call "
                        + "(kvq's contract unrolls the layers, as torch.jit.script does)");
            }
        }
        if (appends != 2 * layers) {
            throw refuse(where, className + ".forward appends " + appends + " tensors to " + present + ", expected "
                    + 2 * layers);
        }
        out.add("  def " + TRANSFER + "(self: " + module + "." + className + ",");
        out.add("    kvq_buffers: List[Tensor],");
        out.add("    kvq_staging: List[Tensor],");
        out.add("    kvq_transfers: List[int]) -> int:");
        out.add("    return " + q + "kvq_apply(kvq_buffers, kvq_staging, kvq_transfers)");
        List<String> result = new ArrayList<>(lines.subList(0, end));
        result.addAll(out);
        result.addAll(lines.subList(end, lines.size()));
        StringBuilder text = new StringBuilder(String.join("\n", result));
        if (text.charAt(text.length() - 1) != '\n') {
            text.append('\n');
        }
        text.append(FUNCTIONS.replace("QUAL.", q));
        return text.toString();
    }

    private static boolean isTopLevel(String line) {
        return !line.isEmpty() && !line.startsWith(" ");
    }

    private static String name(String param) {
        return param.substring(0, param.indexOf(':'));
    }

    private static KvqException refuse(Object where, String why) {
        return new KvqException(ErrorCode.MODEL_INVALID, "placement device with runtime djl needs a TorchScript model "
                + "of kvq's contract (as tools/llama_export.py writes it), and " + where + " does not follow it: " + why
                + "; use placement host (--placement host) or runtime onnx");
    }

    /**
     * The functions the entry calls, in TorchScript. A run decodes as {@link dev.kvq.generate.spi.StoredRun} defines:
     * planes of 4- and 2-bit codes by shift and mask, then {@code ((u + offset) + zero) * scale} or {@code u * scale +
     * zero} in the model's K/V dtype, on the token-major tensors, transposed to {@code [B, heads, T, D]} at the end.
     */
    private static final String FUNCTIONS = """
            def kvq_apply(buffers: List[Tensor],
                staging: List[Tensor],
                transfers: List[int]) -> int:
              n = torch.floordiv(len(transfers), 7)
              moved = annotate(List[Tensor], [])
              done = annotate(List[bool], [])
              for k in range(len(staging)):
                _0 = torch.append(moved, staging[k])
                _1 = torch.append(done, False)
              for j in range(n):
                o = torch.mul(7, j)
                kind = transfers[o]
                dst = buffers[transfers[o + 1]]
                if torch.lt(kind, 3):
                  if not done[kind]:
                    moved[kind] = torch.to(staging[kind], ops.prim.device(dst), ops.prim.dtype(dst))
                    done[kind] = True
                  height = transfers[o + 5]
                  width = transfers[o + 4]
                  view = torch.as_strided(dst, [height, width], [transfers[o + 3], 1], transfers[o + 2])
                  src = torch.narrow(moved[kind], 0, transfers[o + 6], torch.mul(height, width))
                  _2 = torch.copy_(view, torch.reshape(src, [height, width]))
                else:
                  if torch.eq(kind, 3):
                    size = transfers[o + 3]
                    origin = torch.narrow(buffers[transfers[o + 4]], 0, transfers[o + 5], size)
                    _3 = torch.copy_(torch.narrow(dst, 0, transfers[o + 2], size), origin)
                  else:
                    if torch.eq(kind, 4):
                      s = torch.add(o, 7)
                      rows = transfers[o + 5]
                      cols = transfers[o + 4]
                      into = torch.as_strided(dst, [rows, cols], [transfers[o + 3], 1], transfers[o + 2])
                      origin2 = torch.as_strided(buffers[transfers[s + 1]], [rows, cols], [transfers[s + 3], 1],
                          transfers[s + 2])
                      _4 = torch.copy_(into, origin2)
              return n
            def kvq_inputs(ints: Tensor,
                meta: List[int],
                T: int,
                R: int,
                B: int,
                t: int) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
              n = torch.mul(B, t)
              input_ids = torch.reshape(torch.narrow(ints, 0, 0, n), [B, t])
              new_mask = torch.reshape(torch.narrow(ints, 0, n, n), [B, t])
              position_ids = torch.reshape(torch.narrow(ints, 0, torch.mul(2, n), n), [B, t])
              quantized = torch.reshape(torch.narrow(ints, 0, torch.mul(3, n), B), [B, 1])
              residual = torch.reshape(torch.narrow(ints, 0, torch.add(torch.mul(3, n), B), B), [B, 1])
              dev = ops.prim.device(ints)
              _0 = torch.arange(T, dtype=None, layout=None, device=dev)
              hq = torch.lt(torch.unsqueeze(_0, 0), quantized)
              _1 = torch.arange(R, dtype=None, layout=None, device=dev)
              hr = torch.lt(torch.unsqueeze(_1, 0), residual)
              hn = torch.gt(new_mask, 0)
              mask = torch.cat([torch.to(hq, 4), torch.to(hr, 4), torch.to(hn, 4)], 1)
              _2 = torch.zeros([1, 1, 1, 1], dtype=meta[0], layout=None, device=dev)
              shape = torch.expand(_2, [B, meta[1], torch.add(T, R), meta[2]])
              past = annotate(List[Tensor], [])
              for j in range(torch.mul(2, meta[3])):
                _3 = torch.append(past, shape)
              return (input_ids, mask, position_ids, past)
            def kvq_tensor(buffers: List[Tensor],
                refs: List[int],
                i: int,
                n: int) -> Tensor:
              return torch.narrow(buffers[refs[torch.mul(2, i)]], 0, refs[torch.add(torch.mul(2, i), 1)], n)
            def kvq_unpack(codes: Tensor,
                bits: int,
                dim: int) -> Tensor:
              if torch.eq(bits, 8):
                return codes
              s = torch.size(codes)
              chunked = torch.reshape(codes, [s[0], s[1], s[2], torch.floordiv(s[3], 16), 1, 16])
              low = torch.sub(torch.__lshift__(1, bits), 1)
              planes = annotate(List[Tensor], [])
              for p in range(torch.floordiv(8, bits)):
                _0 = torch.bitwise_right_shift(chunked, torch.mul(p, bits))
                _1 = torch.append(planes, torch.bitwise_and(_0, low))
              return torch.reshape(torch.cat(planes, 4), [s[0], s[1], s[2], dim])
            def kvq_affine(u: Tensor,
                scale: Tensor,
                zero: Tensor,
                form: int,
                offset: int) -> Tensor:
              if torch.eq(form, 1):
                return torch.add(torch.mul(u, scale), zero)
              v = u
              if torch.ne(offset, 0):
                v = torch.add(u, offset)
              return torch.mul(torch.add(v, zero), scale)
            def kvq_param(buffers: List[Tensor],
                refs: List[int],
                i: int,
                shape: List[int],
                dtype: int) -> Tensor:
              n = 1
              for d in shape:
                n = torch.mul(n, d)
              return torch.to(torch.reshape(QUAL.kvq_tensor(buffers, refs, i, n), shape), dtype)
            def kvq_run(buffers: List[Tensor],
                refs: List[int],
                i: int,
                meta: List[int],
                m: int,
                T: int,
                B: int) -> Tensor:
              dtype = meta[0]
              dim = meta[2]
              heads = meta[m]
              bits = meta[m + 1]
              if torch.gt(bits, 8):
                raw = QUAL.kvq_param(buffers, refs, i, [T, B, heads, dim], dtype)
                return torch.permute(raw, [1, 2, 0, 3])
              axis = meta[m + 2]
              group = meta[m + 3]
              form = meta[m + 4]
              offset = meta[m + 5]
              row = torch.floordiv(torch.mul(dim, bits), 8)
              n = torch.mul(torch.mul(torch.mul(T, B), heads), row)
              codes = torch.reshape(QUAL.kvq_tensor(buffers, refs, i, n), [T, B, heads, row])
              u = torch.to(QUAL.kvq_unpack(codes, bits, dim), dtype)
              if torch.eq(axis, 0):
                g = torch.floordiv(dim, group)
                scale = QUAL.kvq_param(buffers, refs, torch.add(i, 1), [T, B, heads, g, 1], dtype)
                zero = QUAL.kvq_param(buffers, refs, torch.add(i, 2), [T, B, heads, g, 1], dtype)
                x = QUAL.kvq_affine(torch.reshape(u, [T, B, heads, g, group]), scale, zero, form, offset)
              else:
                tg = torch.floordiv(T, group)
                scale = QUAL.kvq_param(buffers, refs, torch.add(i, 1), [tg, 1, B, heads, dim], dtype)
                zero = QUAL.kvq_param(buffers, refs, torch.add(i, 2), [tg, 1, B, heads, dim], dtype)
                x = QUAL.kvq_affine(torch.reshape(u, [tg, group, B, heads, dim]), scale, zero, form, offset)
              return torch.permute(torch.reshape(x, [T, B, heads, dim]), [1, 2, 0, 3])
            def kvq_layer(buffers: List[Tensor],
                refs: List[int],
                meta: List[int],
                m: int,
                i: int,
                T: int,
                R: int,
                B: int) -> Tuple[Tensor, Tensor, int, int]:
              kv = annotate(List[Tensor], [])
              for kind in range(2):
                runs = meta[m]
                m = torch.add(m, 1)
                parts = annotate(List[Tensor], [])
                for j in range(runs):
                  _0 = torch.append(parts, QUAL.kvq_run(buffers, refs, i, meta, m, T, B))
                  m = torch.add(m, 7)
                  i = torch.add(i, 3)
                if torch.eq(len(parts), 1):
                  _1 = torch.append(kv, parts[0])
                else:
                  _2 = torch.append(kv, torch.cat(parts, 1))
              if torch.gt(R, 0):
                dtype = meta[0]
                heads = meta[1]
                dim = meta[2]
                rk = QUAL.kvq_param(buffers, refs, i, [B, heads, R, dim], dtype)
                rv = QUAL.kvq_param(buffers, refs, torch.add(i, 1), [B, heads, R, dim], dtype)
                return (torch.cat([kv[0], rk], 2), torch.cat([kv[1], rv], 2), m, torch.add(i, 2))
              return (kv[0], kv[1], m, i)
            def kvq_new(kv: Tensor,
                t: int) -> Tensor:
              _0 = torch.narrow(kv, 2, torch.sub(torch.size(kv, 2), t), t)
              return torch.contiguous(torch.to(_0, 6))
            def kvq_flat(present: List[Tensor]) -> Tensor:
              parts = annotate(List[Tensor], [])
              for p in present:
                _0 = torch.append(parts, torch.reshape(p, [-1]))
              return torch.cat(parts, 0)
            """;
}
