import Foundation
import CKernels

/// `snapkv`: original SnapKV (spec §9.2, §16.7) — one-shot prompt eviction **per query head**.
///
/// At `finishPrefill`, each query head `h` scores the prefix with its own observation window (the last
/// `w' = min(w, prompt queries of this turn, t/G)` queries): softmax over every visible key, window
/// columns dropped after the softmax, votes summed over the window rows, 1-D max pooling with radius
/// `⌊κ/2⌋` (κ = 7). It keeps the `t/G − w'` best-pooled prefix tokens (pooled value descending, then lower
/// position) plus the window, in position order, in a stream of its own: storage is per query head, `G`
/// copies per group. A head whose cache holds `≤ t/G` tokens keeps everything. Decode appends the new
/// token to every head's stream and attends densely over it. Before the first eviction the `G` heads of
/// a group share one stream (the prompt is stored once).
public final class SnapKV: KVPolicy, KVStreamInspectable {
    public let shape: AttentionShape
    public let budget: Int
    public let window: Int
    public let kernel: Int
    /// Tokens each query head keeps at eviction: `max(1, t/G)`.
    public var perHeadBudget: Int { max(1, budget / shape.groupSize) }
    /// `streams[layer][queryHead]`; heads of a group point to the same stream until the first eviction.
    private var streams: [[KVStream]]
    private var shared = true
    /// Last `window` queries of the current turn, `[layer][token][queryHead][d]`, and the turn's query count.
    private var windowQueries: [[Float]]
    private var turnQueries: [Int]
    /// When set, `finishPrefill` records each head's pooled scores over the prefix (for tests).
    public var recordsScores = false
    /// `[layer][queryHead]`: pooled scores of the last eviction (empty when nothing was evicted).
    public private(set) var lastPooledScores: [[[Float]]]

    public init(shape: AttentionShape, budget: Int, window: Int = 32, kernel: Int = 7) {
        self.shape = shape
        self.budget = budget
        self.window = window
        self.kernel = kernel
        streams = (0..<shape.layers).map { _ in
            (0..<shape.kvHeads).flatMap { _ -> [KVStream] in
                let s = KVStream(headDim: shape.headDim)
                return Array(repeating: s, count: shape.groupSize)
            }
        }
        windowQueries = Array(repeating: [], count: shape.layers)
        turnQueries = Array(repeating: 0, count: shape.layers)
        lastPooledScores = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, heads = shape.queryHeads
        let row = heads * d
        windowQueries[layer].append(contentsOf: UnsafeBufferPointer(start: input.queries, count: input.tokens * row))
        if windowQueries[layer].count > window * row { windowQueries[layer].removeFirst(windowQueries[layer].count - window * row) }
        turnQueries[layer] += input.tokens
        attend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        attend(layer: layer, input, output: output)
    }

    /// Appends the chunk to every distinct stream of the layer and attends causally, per query head.
    private func attend(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, heads = shape.queryHeads, layerStreams = streams[layer]
        var before = [Int](repeating: 0, count: heads)
        for h in 0..<heads {
            before[h] = layerStreams[h].count - (shared && h % shape.groupSize != 0 ? input.tokens : 0)
            if !shared || h % shape.groupSize == 0 { layerStreams[h].append(input, head: h / shape.groupSize, kvHeads: shape.kvHeads) }
        }
        guard input.outputNeeded else { return }
        ThreadPool.parallelFor(input.tokens * heads) { units in
            for unit in units {
                let t = unit / heads, h = unit % heads
                Attention.dense(query: input.queries + (t * heads + h) * d, stream: layerStreams[h], count: before[h] + t + 1,
                                scale: shape.scale, output: output + (t * heads + h) * d, batched: input.tokens > 1)
            }
        }
    }

    public func finishPrefill() {
        for layer in 0..<shape.layers {
            var kept = [[Int]](repeating: [], count: shape.queryHeads)
            var pooled = [[Float]](repeating: [], count: shape.queryHeads)
            kept.withUnsafeMutableBufferPointer { keptSlots in
                pooled.withUnsafeMutableBufferPointer { pooledScores in
                    ThreadPool.parallelFor(shape.queryHeads) { heads in
                        for h in heads { (keptSlots[h], pooledScores[h]) = select(layer: layer, head: h) }
                    }
                }
            }
            if recordsScores { lastPooledScores[layer] = pooled }
            streams[layer] = (0..<shape.queryHeads).map { h in
                let source = streams[layer][h]
                if !shared { source.retain(slots: kept[h]); return source }
                let copy = KVStream(headDim: shape.headDim, capacity: kept[h].count)
                copy.copyRows(of: source, slots: kept[h])
                return copy
            }
            windowQueries[layer] = []
            turnQueries[layer] = 0
        }
        shared = false
    }

    /// Slots query head `h` keeps (ascending) and its pooled prefix scores.
    private func select(layer: Int, head h: Int) -> ([Int], [Float]) {
        let stream = streams[layer][h], n = stream.count, d = shape.headDim, heads = shape.queryHeads
        let b = perHeadBudget
        guard n > b else { return (Array(0..<n), []) }
        let w = min(window, turnQueries[layer], b), prefix = n - w
        let queriesHeld = windowQueries[layer].count / (heads * d)
        var votes = [Float](repeating: 0, count: prefix)
        var logits = [Float](repeating: 0, count: n)
        var q = [UInt16](repeating: 0, count: d)
        for a in 0..<w {
            windowQueries[layer].withUnsafeBufferPointer {
                rk_f32_to_f16($0.baseAddress! + ((queriesHeld - w + a) * heads + h) * d, &q, Int32(d))
            }
            let visible = prefix + a + 1
            var m = -Float.infinity
            for j in 0..<visible {
                logits[j] = rk_attn_dot(stream.keys + j * d, q, Int32(d), 1) * shape.scale
                m = max(m, logits[j])
            }
            var total: Float = 0
            for j in 0..<visible { logits[j] = expf(logits[j] - m); total += logits[j] }
            for j in 0..<prefix { votes[j] += logits[j] / total }
        }
        let radius = kernel / 2
        var pooled = [Float](repeating: 0, count: prefix)
        for j in 0..<prefix {
            var v = votes[j]
            for i in max(0, j - radius)...min(prefix - 1, j + radius) { v = max(v, votes[i]) }
            pooled[j] = v
        }
        return (KVSelect.topIndices(pooled, b - w) + Array(prefix..<n), pooled)
    }

    /// The stream query head `head` of `layer` attends to.
    public func stream(layer: Int, head: Int) -> KVStream { streams[layer][head] }

    public var inspectableStreams: [KVStream] {
        shared ? streams.flatMap { layer in stride(from: 0, to: layer.count, by: shape.groupSize).map { layer[$0] } }
               : Array(streams.joined())
    }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        s.add(inspectableStreams, read: true)
        if shared { s.bytesReadLastStep *= shape.groupSize }   // every head reads the shared rows
        for q in windowQueries { s.storedBytes += q.count * 4 }
        return s
    }
}

extension KVStream {
    /// Appends rows `slots` of `source` (f16 → f32 → f16 is exact).
    func copyRows(of source: KVStream, slots: [Int]) {
        let d = headDim
        reserve(count + slots.count)
        var k = [Float](repeating: 0, count: d), v = k
        for s in slots {
            rk_f16_to_f32(source.keys + s * d, &k, Int32(d))
            rk_f16_to_f32(source.values + s * d, &v, Int32(d))
            append(key: k, value: v, position: Int(source.positions[s]))
        }
    }
}
