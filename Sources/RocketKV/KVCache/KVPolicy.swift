import CKernels

/// Shape of the attention in every layer of a model.
public struct AttentionShape: Sendable, Equatable {
    public let layers: Int
    public let queryHeads: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Query heads per KV head (GQA group size): query head `h` reads KV head `h / groupSize`.
    public var groupSize: Int { queryHeads / kvHeads }
    /// The attention logit scale, 1/√headDim.
    public var scale: Float { 1 / Float(headDim).squareRoot() }

    public init(layers: Int, queryHeads: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers
        self.queryHeads = queryHeads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }
}

/// Queries, keys and values of one layer for consecutive tokens, after RoPE.
public struct AttentionInput {
    /// `[tokens][queryHeads][headDim]`
    public let queries: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let keys: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let values: UnsafePointer<Float>
    public let tokens: Int
    /// Absolute position of the first token (positions count every token ever processed).
    public let firstPosition: Int
    /// False when the caller discards the attention output (a `PrefillSnapshot` replay, whose prompt was
    /// already attended densely); the shared dense path then only stores the chunk.
    public var outputNeeded = true

    public init(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                tokens: Int, firstPosition: Int) {
        self.queries = queries
        self.keys = keys
        self.values = values
        self.tokens = tokens
        self.firstPosition = firstPosition
    }
}

/// What a policy holds and reads, for the bench and the `--verbose` report.
public struct KVStatistics: Sendable, Equatable {
    /// Cached token slots summed over layers and KV streams.
    public var storedTokens = 0
    /// Bytes of memory held for the cache (keys, values, positions and method metadata).
    public var storedBytes = 0
    /// Bytes of cached keys, values and metadata read by the last decode step, all layers.
    public var bytesReadLastStep = 0

    public init() {}
}

/// A KV-cache method: how a sequence stores keys and values and which of them each attention reads.
///
/// The model calls these methods layer by layer and never knows which method runs. One instance serves
/// one sequence; its memory is released when it is deallocated.
public protocol KVPolicy: AnyObject {
    /// Stores a chunk of prompt tokens and computes dense causal attention for it (prefill is never sparse).
    /// `output` receives `[tokens][queryHeads][headDim]`.
    func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>)

    /// Called after the last chunk of a prompt (each turn): the moment for prompt eviction.
    func finishPrefill()

    /// Appends one generated token and attends to the cached tokens the method selects.
    func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>)

    var statistics: KVStatistics { get }

    /// The resolved parameters (budget split, page size, ...) for `--verbose` and the bench, if any.
    var planDescription: String? { get }
}

extension KVPolicy {
    public var planDescription: String? { nil }
}

/// Dense causal attention of a chunk over streams that already hold it (the shared prefill path).
///
/// `streams[h]` is KV head `h` of the layer; query `t` of the chunk sees the first
/// `visibleBefore + t + 1` slots. Bit-identical to `Attention.dense` per query (the kernels share each key
/// and value load among the query heads of a KV group and, in prefill, among 4 consecutive tokens).
public func causalAttention(_ input: AttentionInput, streams: [KVStream], visibleBefore: Int, shape: AttentionShape,
                            output: UnsafeMutablePointer<Float>) {
    let d = shape.headDim, heads = shape.queryHeads, g = shape.groupSize, n = input.tokens
    guard input.outputNeeded else { return }
    if n == 1 {
        decodeAttention(query: input.queries, streams: streams, count: visibleBefore + 1, shape: shape, output: output)
        return
    }
    let tokenBlock = 4
    let blocks = (n + tokenBlock - 1) / tokenBlock
    let units = shape.kvHeads * blocks
    // Later tokens see more keys: deal units out round-robin so every thread gets a fair share.
    ThreadPool.run { index, threads in
        let rows = tokenBlock * g
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * rows * d) { buffer in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: rows) { counts in
                let q = buffer.baseAddress!, out = q + rows * d
                for unit in stride(from: index, to: units, by: threads) {
                    let kv = unit % shape.kvHeads, t0 = unit / shape.kvHeads * tokenBlock
                    let tokens = min(tokenBlock, n - t0)
                    var nq = 0
                    for t in t0..<(t0 + tokens) {
                        for h in (kv * g)..<(kv * g + g) {
                            (q + nq * d).update(from: input.queries + (t * heads + h) * d, count: d)
                            counts[nq] = Int32(visibleBefore + t + 1)
                            nq += 1
                        }
                    }
                    let stream = streams[kv]
                    rk_attn_causal(q, d, counts.baseAddress!, Int32(nq), stream.keys, stream.values, Int32(d), shape.scale, out, d, 1)
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

/// Single-token attention (llama.cpp's decode order) of every query head over the first `count` slots.
///
/// Long caches take three parallel phases so both cores stream the cache: scores per (KV head, key range),
/// softmax per query head, then P·V per share of accumulator lanes; short ones one job per KV head.
public func decodeAttention(query: UnsafePointer<Float>, streams: [KVStream], count: Int, shape: AttentionShape,
                            output: UnsafeMutablePointer<Float>) {
    let d = shape.headDim, g = shape.groupSize, kvHeads = shape.kvHeads
    if count < 256 || d % 64 != 0 {
        ThreadPool.parallelFor(kvHeads) { range in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: g) { counts in
                for i in 0..<g { counts[i] = Int32(count) }
                for kv in range {
                    rk_attn_causal(query + kv * g * d, d, counts.baseAddress!, Int32(g), streams[kv].keys, streams[kv].values,
                                   Int32(d), shape.scale, output + kv * g * d, d, 0)
                }
            }
        }
        return
    }
    let pstride = (count + 63) / 64 * 64
    let heads = shape.queryHeads
    withUnsafeTemporaryAllocation(of: Float.self, capacity: heads * pstride) { buffer in
        let scores = buffer.baseAddress!
        let ranges = 4 * ThreadPool.threadCount
        let keysPerRange = (count + ranges - 1) / ranges
        ThreadPool.parallelFor(kvHeads * ranges) { units in
            for unit in units {
                let kv = unit / ranges, r = unit % ranges
                let j0 = min(count, r * keysPerRange), j1 = min(count, j0 + keysPerRange)
                if j0 < j1 {
                    rk_attn_scores(query + kv * g * d, d, Int32(g), streams[kv].keys, Int32(d), Int32(j0), Int32(j1), shape.scale,
                                   scores + kv * g * pstride, pstride, 0)
                }
            }
        }
        ThreadPool.parallelFor(heads) { range in
            for h in range { rk_attn_probs(scores + h * pstride, Int32(count), Int32(pstride)) }
        }
        // P·V: the KV groups' 32 accumulator lanes each, dealt to the threads in equal contiguous shares, so
        // that a thread reads whole value rows (a split by dims made each thread read every other cache line,
        // 15% slower at 8K). A group split between two threads is summed from its lanes afterwards.
        let threads = ThreadPool.threadCount, lanes = 32 * kvHeads
        let accumulatorsPerGroup = g * d * 32
        withUnsafeTemporaryAllocation(of: Float.self, capacity: kvHeads * accumulatorsPerGroup) { accumulators in
            let acc = accumulators.baseAddress!
            ThreadPool.run { thread, _ in
                var lane = thread * lanes / threads
                let end = (thread + 1) * lanes / threads
                while lane < end {
                    let kv = lane / 32, l0 = lane % 32, l1 = min(32, l0 + end - lane)
                    let probabilities = scores + kv * g * pstride, values = streams[kv].values
                    if l1 - l0 == 32 {
                        rk_attn_pv(probabilities, pstride, Int32(g), Int32(count), values, Int32(d), output + kv * g * d, d, 0)
                    } else {
                        rk_attn_pv_lanes(probabilities, pstride, Int32(g), Int32(count), values, Int32(d), Int32(l0), Int32(l1),
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

extension KVStream {
    /// Appends the chunk's rows of KV head `head`.
    func append(_ input: AttentionInput, head: Int, kvHeads: Int) {
        let d = headDim
        for t in 0..<input.tokens {
            let offset = (t * kvHeads + head) * d
            append(key: input.keys + offset, value: input.values + offset, position: input.firstPosition + t)
        }
    }
}
