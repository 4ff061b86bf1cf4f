import Foundation
import CKernels

/// Exact attention over cached rows, in llama.cpp's arithmetic: the one home of attention for every
/// KV method. Three verbs — causal attention of a chunk over a prefix (`causal`), attention over a chosen
/// subset of slots (`subset`, `gathered`), and scores only (`logits`) — and plain reference twins.
///
/// f16 rows: as llama.cpp does with an f16 cache, the query is rounded to f16 before the products with K, and
/// the probabilities are rounded to f16 before the products with V. `batched` selects the summation order
/// llama.cpp uses when several tokens are processed at once (prefill) rather than one (decode).
///
/// Quantized rows (`KVRowType.q8_0`, `.q4_0`, keys and values each of its own type): as llama.cpp's flash
/// attention reads a quantized cache, the query is quantized to Q8_0 for integer products with K, and f32
/// probabilities multiply the dequantized V (`rk_kv_attend`); one order for prefill and decode, so `batched` does not apply. Every verb keeps its
/// bit-for-bit agreement with `subset` for these rows too.
public enum Attention {
    // MARK: Causal attention of a chunk

    /// Dense causal attention of a chunk over streams that already hold it (the prefill path, and the decode
    /// path of methods that read everything they keep).
    ///
    /// `streams[h]` is KV head `h` of the layer; query `t` of the chunk sees the first `visibleBefore + t + 1`
    /// slots, or with a `window` only the last `window` of them (a sliding-window layer). Bit-identical to
    /// `subset` over those slots per query (the kernels share each key and value load among the query heads
    /// of a KV group and, in prefill, among 4 consecutive tokens).
    ///
    /// A window that starts mid-way through a group of `rowGroup` slots is read from the group's start with the
    /// rows before the window masked (f16 rows): llama.cpp holds token p in slot p and masks the rows outside the
    /// window, and its sums group rows by slot, so the masked rows' zeros keep the lanes where its sums have them.
    /// That is exact as long as slot and position agree modulo `rowGroup` (`SlidingWindowKV` drops rows in
    /// multiples of it).
    public static func causal(_ input: AttentionInput, streams: [KVStream], visibleBefore: Int, shape: AttentionShape,
                              output: UnsafeMutablePointer<Float>, window: Int? = nil) {
        let d = shape.headDim, heads = shape.queryHeads, g = shape.groupSize, n = input.tokens
        guard input.outputNeeded else { return }
        let group = shape.kvType.isQuantized ? 1 : rowGroup   // llama.cpp's flash attention skips masked rows
        /// The first slot read by a query that sees `visible` slots, and how many of the rows from it are masked.
        @Sendable func start(_ visible: Int) -> (first: Int, masked: Int) {
            guard let window, visible > window else { return (0, 0) }
            let first = visible - window
            return (first - first % group, first % group)
        }
        if n == 1 {
            let (first, masked) = start(visibleBefore + 1)
            decode(query: input.queries, streams: streams, first: first, count: visibleBefore + 1 - first, masked: masked,
                   shape: shape, output: output)
            return
        }
        // A window gives each token its own first slot: blocks of one token then.
        let tokenBlock = window == nil ? 4 : 1
        let blocks = (n + tokenBlock - 1) / tokenBlock
        let units = shape.kvHeads * blocks
        // Later tokens see more keys: deal units out round-robin so every thread gets a fair share.
        nonisolated(unsafe) let output = output   // each unit writes its own (token, head) rows
        ThreadPool.run { index, threads in
            let rows = tokenBlock * g
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * rows * d) { buffer in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: rows) { counts in
                    let q = buffer.baseAddress!, out = q + rows * d
                    for unit in stride(from: index, to: units, by: threads) {
                        let kv = unit % shape.kvHeads, t0 = unit / shape.kvHeads * tokenBlock
                        let tokens = min(tokenBlock, n - t0)
                        let (first, masked) = start(visibleBefore + t0 + 1)
                        var nq = 0
                        for t in t0..<(t0 + tokens) {
                            for h in (kv * g)..<(kv * g + g) {
                                (q + nq * d).update(from: input.queries + (t * heads + h) * d, count: d)
                                counts[nq] = Int32(visibleBefore + t + 1 - first)
                                nq += 1
                            }
                        }
                        let stream = streams[kv]
                        attendRows(queries: q, counts: counts.baseAddress!, masked: masked, nq, keys: stream.keyRow(first),
                                   values: stream.valueRow(first), kvType: stream.kvType, headDim: d, scale: shape.scale, output: out,
                                   batched: true)
                        nq = 0
                        for t in t0..<(t0 + tokens) {
                            for h in (kv * g)..<(kv * g + g) {
                                (output + (t * heads + h) * d).update(from: out + nq * d, count: d)
                                nq += 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// llama.cpp's f16 attention sums rows in groups of slots: 8 for the softmax's sum and the prefill's P·V, 32 (four
    /// accumulators of 8) for the single-token P·V.
    public static let rowGroup = 32

    /// Single-token attention (llama.cpp's decode order) of every query head over slots `first ..< first + count`,
    /// the first `masked` of them masked (f16 rows only).
    ///
    /// Long caches take three parallel phases so both cores stream the cache: scores per (KV head, key range),
    /// softmax per query head, then P·V per share of accumulator lanes; short ones one job over the query heads, each
    /// thread a contiguous share of them (a model with one KV head, as Gemma 3 270M, still uses every thread).
    private static func decode(query: UnsafePointer<Float>, streams: [KVStream], first: Int, count: Int, masked: Int = 0,
                               shape: AttentionShape, output: UnsafeMutablePointer<Float>) {
        if shape.kvType.isQuantized {
            quantizedDecode(query: query, streams: streams, first: first, count: count, shape: shape, output: output)
            return
        }
        let d = shape.headDim, g = shape.groupSize, kvHeads = shape.kvHeads
        // Read only, or written in disjoint parts by the tasks of each job (rows of heads, lanes).
        nonisolated(unsafe) let query = query, output = output
        @Sendable func keys(_ kv: Int) -> UnsafePointer<UInt16> { UnsafePointer(streams[kv].halfKeys + first * d) }
        @Sendable func values(_ kv: Int) -> UnsafePointer<UInt16> { UnsafePointer(streams[kv].halfValues + first * d) }
        if count < 256 || d % 64 != 0 {
            ThreadPool.parallelFor(shape.queryHeads) { range in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: g) { counts in
                    for i in 0..<g { counts[i] = Int32(count) }
                    var h = range.lowerBound
                    while h < range.upperBound {
                        let kv = h / g, end = min(range.upperBound, (kv + 1) * g)
                        rk_attn_causal(query + h * d, d, counts.baseAddress!, Int32(masked), Int32(end - h), keys(kv), values(kv),
                                       Int32(d), shape.scale, output + h * d, d, 0)
                        h = end
                    }
                }
            }
            return
        }
        let pstride = (count + 63) / 64 * 64
        let heads = shape.queryHeads
        withUnsafeTemporaryAllocation(of: Float.self, capacity: heads * pstride) { buffer in
            nonisolated(unsafe) let scores = buffer.baseAddress!   // rows of heads, each written by one task
            forEachKeyRange(count: count, kvHeads: kvHeads) { kv, j0, j1 in
                rk_attn_scores(query + kv * g * d, d, Int32(g), keys(kv), Int32(d), Int32(j0), Int32(j1), shape.scale,
                               scores + kv * g * pstride, pstride, 0)
            }
            ThreadPool.parallelFor(heads) { range in
                for h in range { rk_attn_probs(scores + h * pstride, Int32(count), Int32(masked), Int32(pstride)) }
            }
            // P·V: the KV groups' 32 accumulator lanes each, dealt to the threads in equal contiguous shares, so
            // that a thread reads whole value rows (a split by dims made each thread read every other cache line,
            // 15% slower at 8K). A group split between two threads is summed from its lanes afterwards.
            let threads = ThreadPool.threadCount, lanes = 32 * kvHeads
            let accumulatorsPerGroup = g * d * 32
            withUnsafeTemporaryAllocation(of: Float.self, capacity: kvHeads * accumulatorsPerGroup) { accumulators in
                nonisolated(unsafe) let acc = accumulators.baseAddress!   // lanes, each written by one task
                ThreadPool.run { thread, _ in
                    var lane = thread * lanes / threads
                    let end = (thread + 1) * lanes / threads
                    while lane < end {
                        let kv = lane / 32, l0 = lane % 32, l1 = min(32, l0 + end - lane)
                        let probabilities = scores + kv * g * pstride
                        if l1 - l0 == 32 {
                            rk_attn_pv(probabilities, pstride, Int32(g), Int32(count), values(kv), Int32(d), output + kv * g * d, d, 0)
                        } else {
                            rk_attn_pv_lanes(probabilities, pstride, Int32(g), Int32(count), values(kv), Int32(d), Int32(l0), Int32(l1),
                                             acc + kv * accumulatorsPerGroup)
                        }
                        lane += l1 - l0
                    }
                }
                let splitGroups = Set((1..<threads).map { $0 * lanes / threads }.filter { $0 % 32 != 0 }.map { $0 / 32 })
                for kv in splitGroups {
                    rk_attn_pv_reduce(acc + kv * accumulatorsPerGroup, Int32(g), Int32(d), output + kv * g * d, d)
                }
            }
        }
    }

    /// `decode` over quantized rows in three parallel phases, as `rk_kv_attend` computes it for each query head:
    /// scores per (KV head, key range), the softmax per query head, then P·V per (KV head, chunk of
    /// `RK_KV_CHUNK` rows), the chunks' partial sums added in order afterwards.
    private static func quantizedDecode(query: UnsafePointer<Float>, streams: [KVStream], first: Int, count: Int,
                                        shape: AttentionShape, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, g = shape.groupSize, kvHeads = shape.kvHeads, heads = shape.queryHeads
        let keyType = shape.kvType.key.kernelType, valueType = shape.kvType.value.kernelType
        let q8Bytes = d / 32 * 34, chunk = Int(RK_KV_CHUNK)
        let chunks = (count + chunk - 1) / chunk
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: heads * q8Bytes) { q8Buffer in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: heads * count + kvHeads * chunks * g * d) { buffer in
                // Read only, or written in disjoint parts by the tasks of each job (rows of heads, chunks).
                nonisolated(unsafe) let q8 = q8Buffer.baseAddress!, scores = buffer.baseAddress!
                nonisolated(unsafe) let partials = scores + heads * count
                for h in 0..<heads { rk_quantize_row_q8_0(query + h * d, q8 + h * q8Bytes, Int32(d)) }
                forEachKeyRange(count: count, kvHeads: kvHeads) { kv, j0, j1 in
                    rk_kv_scores(keyType, q8 + kv * g * q8Bytes, Int32(g), streams[kv].keyRow(first), Int32(d), Int32(j0), Int32(j1),
                                 shape.scale, scores + kv * g * count, count)
                }
                ThreadPool.parallelFor(heads) { range in
                    for h in range { rk_attn_softmax(scores + h * count, Int32(count)) }
                }
                ThreadPool.parallelFor(kvHeads * chunks) { units in
                    for unit in units {
                        let kv = unit / chunks, c = unit % chunks
                        rk_kv_pv(valueType, scores + kv * g * count, count, Int32(g), Int32(c * chunk), Int32(min(count, (c + 1) * chunk)),
                                 streams[kv].valueRow(first), Int32(d), partials + unit * g * d, d)
                    }
                }
                for kv in 0..<kvHeads {
                    let out = output + kv * g * d
                    out.update(from: partials + kv * chunks * g * d, count: g * d)
                    for c in 1..<max(1, chunks) {
                        let part = partials + (kv * chunks + c) * g * d
                        for i in 0..<(g * d) { out[i] += part[i] }
                    }
                }
            }
        }
    }

    /// Runs `body(kv, j0, j1)` in parallel for every KV head and each of `4 × threads` ranges of its `count` keys:
    /// the score phase of a long decode, spread so that both cores stream the cache.
    private static func forEachKeyRange(count: Int, kvHeads: Int, _ body: @Sendable (_ kv: Int, _ j0: Int, _ j1: Int) -> Void) {
        let ranges = 4 * ThreadPool.threadCount
        let keysPerRange = (count + ranges - 1) / ranges
        ThreadPool.parallelFor(kvHeads * ranges) { units in
            for unit in units {
                let kv = unit / ranges, r = unit % ranges
                let j0 = min(count, r * keysPerRange), j1 = min(count, j0 + keysPerRange)
                if j0 < j1 { body(kv, j0, j1) }
            }
        }
    }

    /// `nq` queries (rows of `headDim`) over the first `counts[i]` of the given key and value rows: the f16 kernel
    /// (`batched` order or not) or the quantized one.
    private static func attendRows(queries: UnsafePointer<Float>, counts: UnsafePointer<Int32>, masked: Int = 0, _ nq: Int,
                                   keys: UnsafeRawPointer, values: UnsafeRawPointer, kvType: KVCacheType, headDim d: Int, scale: Float,
                                   output: UnsafeMutablePointer<Float>, batched: Bool) {
        if kvType.isQuantized {
            rk_kv_attend(kvType.key.kernelType, kvType.value.kernelType, queries, d, counts, Int32(nq), keys, values, Int32(d), scale, output, d, nil, 0)
        } else {
            rk_attn_causal(queries, d, counts, Int32(masked), Int32(nq), keys.assumingMemoryBound(to: UInt16.self), values.assumingMemoryBound(to: UInt16.self),
                           Int32(d), scale, output, d, batched ? 1 : 0)
        }
    }

    // MARK: Attention over a subset of slots

    /// `output = softmax(q·Kᵀ·scale)·V` of one query over the slots `slots` of `stream` (nil: the first `count`
    /// slots in order, which gives the same bits as listing them). With `probabilities`, the softmax
    /// probabilities (f32, before the f16 rounding for the products with V) are written to `probabilities[0..<count]`.
    public static func subset(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafePointer<Int32>?, count: Int, scale: Float,
                              output: UnsafeMutablePointer<Float>, batched: Bool = false,
                              probabilities: UnsafeMutablePointer<Float>? = nil) {
        let d = stream.headDim
        guard count > 0 else { output.update(repeating: 0, count: d); return }
        if stream.kvType.isQuantized {
            quantizedSubset(query: query, stream: stream, slots: slots, count: count, scale: scale, output: output, probabilities: probabilities)
            return
        }
        let keys = stream.halfKeys
        withUnsafeTemporaryAllocation(of: Float.self, capacity: probabilities == nil ? count : 0) { scoreBuffer in
            withUnsafeTemporaryAllocation(of: UInt16.self, capacity: count + d) { halfBuffer in
                let scores = probabilities ?? scoreBuffer.baseAddress!, q = halfBuffer.baseAddress!, halfProbabilities = q + d
                rk_f32_to_f16(query, q, Int32(d))
                for j in 0..<count {
                    let slot = slots.map { Int($0[j]) } ?? j
                    scores[j] = rk_attn_dot(keys + slot * d, q, Int32(d), batched ? 1 : 0) * scale
                }
                rk_attn_softmax(scores, Int32(count))
                rk_f32_to_f16(scores, halfProbabilities, Int32(count))
                rk_attn_values(halfProbabilities, stream.halfValues, slots, Int32(count), Int32(d), output, batched ? 1 : 0)
            }
        }
    }

    /// `subset` over quantized rows: the chosen rows gathered (unless they are the first `count`), then `rk_kv_attend`.
    private static func quantizedSubset(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafePointer<Int32>?, count: Int,
                                        scale: Float, output: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>?) {
        let d = stream.headDim, keyType = stream.kvType.key.kernelType, valueType = stream.kvType.value.kernelType
        var n = Int32(count)
        guard let slots else {
            rk_kv_attend(keyType, valueType, query, d, &n, 1, stream.keyRow(0), stream.valueRow(0), Int32(d), scale, output, d, probabilities, count)
            return
        }
        withUnsafeTemporaryAllocation(byteCount: count * (stream.keyBytes + stream.valueBytes), alignment: 64) { rows in
            gather(stream, slots: slots, count: count, into: rows.baseAddress!)
            rk_kv_attend(keyType, valueType, query, d, &n, 1, rows.baseAddress!, rows.baseAddress! + count * stream.keyBytes, Int32(d), scale, output, d,
                         probabilities, count)
        }
    }

    /// `subset` over the first `count` slots.
    public static func dense(query: UnsafePointer<Float>, stream: KVStream, count: Int, scale: Float,
                             output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        subset(query: query, stream: stream, slots: nil, count: count, scale: scale, output: output, batched: batched)
    }

    /// `subset` over a buffer of slots.
    public static func sparse(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafeBufferPointer<Int32>,
                              scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        subset(query: query, stream: stream, slots: slots.baseAddress, count: slots.count, scale: scale, output: output, batched: batched)
    }

    /// Copies the key rows then the value rows of `slots` into `rows` (`count·(keyBytes + valueBytes)` bytes), for
    /// `gathered`.
    static func gather(_ stream: KVStream, slots: UnsafePointer<Int32>, count: Int, into rows: UnsafeMutableRawPointer) {
        rk_gather_rows(stream.keys, stream.values, stream.keyBytes, stream.valueBytes, slots, Int32(count), rows, rows + count * stream.keyBytes)
    }

    /// `heads` query heads (`queries`/`output`: `[heads][headDim]`) over `count` gathered rows of `kvType`
    /// (`gather`'s layout): each key and value is converted once for all of them. Bit-identical to `subset` per head.
    static func gathered(queries: UnsafePointer<Float>, heads: Int, rows: UnsafeRawPointer, kvType: KVCacheType, count: Int, headDim d: Int,
                         scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: heads) { counts in
            counts.initialize(repeating: Int32(count))
            attendRows(queries: queries, counts: counts.baseAddress!, heads, keys: rows, values: rows + count * kvType.key.rowBytes(headDim: d),
                       kvType: kvType, headDim: d, scale: scale, output: output, batched: batched)
        }
    }

    /// The `heads` query heads of one KV group over the same `slots` of `stream`, the rows gathered once.
    public static func sparseGroup(queries: UnsafePointer<Float>, heads: Int, stream: KVStream, slots: UnsafeBufferPointer<Int32>,
                                   scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        let n = slots.count
        withUnsafeTemporaryAllocation(byteCount: max(1, n * (stream.keyBytes + stream.valueBytes)), alignment: 64) { rows in
            if let slots = slots.baseAddress { gather(stream, slots: slots, count: n, into: rows.baseAddress!) }
            gathered(queries: queries, heads: heads, rows: rows.baseAddress!, kvType: stream.kvType, count: n, headDim: stream.headDim,
                     scale: scale, output: output, batched: batched)
        }
    }

    // MARK: Scores only

    /// The attention logits `q·k·scale` of the first `count` slots, in decode arithmetic (f16 query,
    /// llama.cpp's single-token summation order; a Q8_0 query for quantized rows): the very logits `dense`
    /// computes for one token.
    static func logits(query: UnsafePointer<Float>, stream: KVStream, count: Int, scale: Float,
                       into scores: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        if stream.kvType.isQuantized {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: d / 32 * 34) { q8 in
                rk_quantize_row_q8_0(query, q8.baseAddress!, Int32(d))
                rk_kv_scores(stream.kvType.key.kernelType, q8.baseAddress!, 1, stream.keys, Int32(d), 0, Int32(count), scale, scores, count)
            }
            return
        }
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: d) { halfBuffer in
            let q = halfBuffer.baseAddress!
            rk_f32_to_f16(query, q, Int32(d))
            for j in 0..<count { scores[j] = rk_attn_dot(stream.halfKeys + j * d, q, Int32(d), 0) * scale }
        }
    }

    // MARK: Reference twin

    /// Plain reference (standard-library Float16, Double sums, libm exp) for tests: agrees with the
    /// kernels to float rounding, not bit for bit.
    public static func denseReference(query: [Float], keys: [[Float]], values: [[Float]], scale: Float) -> [Float] {
        let q = query.map { Double(Float16($0)) }
        var scores = keys.map { k in zip(q, k).reduce(0.0) { $0 + $1.0 * Double(Float16($1.1)) } * Double(scale) }
        let m = scores.max() ?? 0
        scores = scores.map { Foundation.exp($0 - m) }
        let total = scores.reduce(0, +)
        var out = [Double](repeating: 0, count: q.count)
        for (p, v) in zip(scores, values) {
            for i in out.indices { out[i] += p / total * Double(Float16(v[i])) }
        }
        return out.map { Float($0) }
    }

    /// Plain reference for quantized rows, for tests: `keys` and `values` are the rows as stored (dequantized),
    /// the query goes through Q8_0 (per block of 32: scale max|x|/127 rounded to f16, values rounded to the
    /// nearest multiple), then Double products, libm exp and Double sums. Agrees with the kernels to float rounding.
    public static func quantizedReference(query: [Float], keys: [[Float]], values: [[Float]], scale: Float) -> [Float] {
        var q = [Double](repeating: 0, count: query.count)
        for b in stride(from: 0, to: query.count, by: 32) {
            let amax = query[b..<(b + 32)].map(abs).max()!
            let d = amax / 127, inverse = amax == 0 ? 0 : 127 / amax
            for i in b..<(b + 32) { q[i] = Double(Float(Float16(d))) * Double((query[i] * inverse).rounded(.toNearestOrEven)) }
        }
        var scores = keys.map { k in zip(q, k).reduce(0.0) { $0 + $1.0 * Double($1.1) } * Double(scale) }
        let m = scores.max() ?? 0
        scores = scores.map { Foundation.exp($0 - m) }
        let total = scores.reduce(0, +)
        var out = [Double](repeating: 0, count: q.count)
        for (p, v) in zip(scores, values) {
            for i in out.indices { out[i] += p / total * Double(v[i]) }
        }
        return out.map { Float($0) }
    }
}
