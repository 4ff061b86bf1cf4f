/// `snapkv`: original SnapKV (spec §9.2, §16.7) — one-shot prompt eviction **per query head**.
///
/// At `finishPrefill`, each query head `h` scores the prefix with its own observation window (the last
/// `w' = min(w, prompt queries of this turn, t/G)` queries) by `SnapKVScoring` as a group of one head:
/// softmax over every visible key, window columns dropped after the softmax, votes summed over the window
/// rows, 1-D max pooling with radius `⌊κ/2⌋` (κ = 7). It keeps the `t/G − w'` best-pooled prefix tokens
/// (pooled value descending, then lower position) plus the window, in position order, in a stream of its
/// own: storage is per query head, `G` copies per group. A head whose cache holds `≤ t/G` tokens keeps
/// everything. Decode appends the new token to every head's stream and attends densely over it. Before the
/// first eviction the `G` heads of a group share one stream (the prompt is stored once).
public final class SnapKV: KVPolicy, KVStreamInspectable {
    static let windowOption = KVOption("window", default: 32, "observation window in tokens")
    static let kernelOption = KVOption("kernel", default: 7, "max-pooling kernel size")
    public static let method = KVMethod(
        name: "snapkv", summary: "SnapKV (original): per query head, window votes with max pooling keep t/G prompt tokens each; generated tokens appended.",
        options: [windowOption, kernelOption], needsBudget: true) { context in
        SnapKV(shape: context.shape, budget: try context.requiredBudget(), window: try context.int(windowOption, range: 1...100_000),
               kernel: try context.int(kernelOption, range: 1...1001))
    }

    public let shape: AttentionShape
    public let budget: Int
    public let window: Int
    public let kernel: Int
    /// Tokens each query head keeps at eviction: `max(1, t/G)`.
    public var perHeadBudget: Int { max(1, budget / shape.groupSize) }
    /// One stream per KV group until the first eviction, then one per query head.
    public private(set) var store: KVStore
    private let queries: QueryWindow
    /// When set, `finishPrefill` records each head's pooled scores over the prefix (for tests).
    public var recordsScores = false
    /// `[layer][queryHead]`: pooled scores of the last eviction (empty when nothing was evicted).
    public private(set) var lastPooledScores: [[[Float]]]

    public init(shape: AttentionShape, budget: Int, window: Int = 32, kernel: Int = 7) {
        self.shape = shape
        self.budget = budget
        self.window = window
        self.kernel = kernel
        store = KVStore(shape: shape)
        queries = QueryWindow(layers: shape.layers, window: window, queryHeads: shape.queryHeads, headDim: shape.headDim)
        lastPooledScores = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        queries.record(layer: layer, input)
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func finishPrefill() {
        let perStream = store.copiesPerGroup == 1 ? shape.groupSize : 1
        let shape = shape, queries = queries, perHeadBudget = perHeadBudget, kernel = kernel
        var kept = [[[Int]]](repeating: [[Int]](repeating: [], count: shape.queryHeads), count: shape.layers)
        for layer in 0..<shape.layers {
            var pooled = [[Float]](repeating: [], count: shape.queryHeads)
            let layerStreams = store.streams[layer]
            kept[layer].withUnsafeMutableBufferPointer { keptSlots in
                pooled.withUnsafeMutableBufferPointer { pooledScores in
                    nonisolated(unsafe) let keptSlots = keptSlots, pooledScores = pooledScores   // each head writes its own elements
                    ThreadPool.parallelFor(shape.queryHeads) { heads in
                        for h in heads {
                            let stream = layerStreams[h / perStream]
                            (keptSlots[h], pooledScores[h]) = queries.keptSlots(layer: layer, heads: h..<(h + 1), stream: stream, scale: shape.scale,
                                                                                promptBudget: perHeadBudget, kernel: kernel)
                                ?? (Array(0..<stream.count), [])
                        }
                    }
                }
            }
            if recordsScores { lastPooledScores[layer] = pooled }
            if store.copiesPerGroup > 1 {
                for h in 0..<shape.queryHeads { store.retain(layer: layer, stream: h, slots: kept[layer][h]) }
            }
        }
        if store.copiesPerGroup == 1 { store = store.splitPerHead(kept: kept) }
        queries.reset()
    }

    /// The stream query head `head` of `layer` attends to.
    public func stream(layer: Int, head: Int) -> KVStream { store.streams[layer][head / (store.copiesPerGroup == 1 ? shape.groupSize : 1)] }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: true)
        if store.copiesPerGroup == 1 { s.bytesReadLastStep *= shape.groupSize }   // every head reads the shared rows
        s.storedBytes += queries.allocatedBytes
        return s
    }
}
