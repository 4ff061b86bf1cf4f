import CKernels

/// `h2o`: Heavy-Hitter Oracle (spec §9.6): per KV head, `t − ⌊t/2⌋` most recent tokens plus the `⌊t/2⌋`
/// "heavy hitters" with the largest accumulated attention.
///
/// Every cached token carries an accumulated score: the sum of the softmax probabilities it has received
/// from every query so far, summed over the query heads of its group. Prompt scores are accumulated
/// **during prefill** (the column sums of the prompt's causal attention, computed from the probabilities
/// of the dense prefill attention itself, chunk by chunk), so no queries need to be kept for
/// `finishPrefill`, which trims each stream to the budget. Each decode step appends its token (score 0),
/// evicts the non-recent token with the lowest score when the cache exceeds `t` (ties: the oldest), then
/// attends densely over the `≤ t` tokens kept and adds the step's probabilities to their scores.
/// (Evicting before attending keeps both the stored and the attended tokens within `t`.)
public final class H2O: KVPolicy, KVStreamInspectable {
    static let heavyOption = KVOption("heavy", default: 0.5, "fraction of the budget for heavy hitters, the rest recent")
    public static let method = KVMethod(
        name: "h2o", summary: "H2O: heavy hitters by accumulated attention (summed over the group) plus recent tokens, t in all.",
        options: [heavyOption], needsBudget: true) { context in
        H2O(shape: context.shape, budget: try context.requiredBudget(), heavyFraction: try context.number(heavyOption, range: 0...1))
    }

    public let shape: AttentionShape
    public let budget: Int
    public let heavy: Int
    public var recent: Int { budget - heavy }
    public let store: KVStore
    /// Accumulated scores per slot, `[layer][kvHead][slot]`.
    public private(set) var scores: [[[Float]]]

    public init(shape: AttentionShape, budget: Int, heavyFraction: Double = 0.5) {
        self.shape = shape
        self.budget = budget
        heavy = min(budget - 1, max(0, Int((Double(budget) * heavyFraction).rounded(.down))))
        store = KVStore(shape: shape)
        scores = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let before = store.append(layer: layer, input)
        attend(layer: layer, input, visibleBefore: before, output: output)
    }

    public func finishPrefill() {
        for layer in 0..<shape.layers {
            for g in 0..<shape.kvHeads {
                let n = store.streams[layer][g].count
                guard n > budget else { continue }
                let candidates = n - recent
                let kept = scores[layer][g].withUnsafeBufferPointer {
                    KVSelect.topIndices(UnsafeBufferPointer(rebasing: $0[0..<candidates]), heavy)
                } + Array(candidates..<n)
                retain(layer: layer, group: g, slots: kept)
                store.streams[layer][g].reserve(budget + 1)   // room for each decode step's token before its eviction
            }
        }
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.append(layer: layer, input)
        for (g, stream) in store.streams[layer].enumerated() {
            scores[layer][g].append(0)
            let n = stream.count
            guard n > budget else { continue }
            // The lowest-scoring non-recent slot (first one on ties).
            var victim = 0
            let s = scores[layer][g]
            for j in 1..<(n - recent) where s[j] < s[victim] { victim = j }
            stream.remove(slots: victim..<(victim + 1))
            scores[layer][g].remove(at: victim)
        }
        attend(layer: layer, input, visibleBefore: store.count(layer: layer) - 1, output: output)
    }

    private func retain(layer: Int, group: Int, slots: [Int]) {
        store.retain(layer: layer, stream: group, slots: slots)
        let old = scores[layer][group]
        scores[layer][group] = slots.map { old[$0] }
    }

    /// Dense causal attention of the chunk, adding each token's probabilities to the group's scores.
    ///
    /// A prompt chunk of f16 rows takes the shared dense path for its outputs (skipped when they are not needed,
    /// as in an evaluation's prefill replay) and the batched score kernel for its probabilities, 8 tokens of a
    /// head per pass over the keys: the same bits as `subset`'s, added in the same order, so the scores equal
    /// `attendOneByOne`'s (tested), the reference it keeps for decode steps and quantized rows.
    private func attend(layer: Int, _ input: AttentionInput, visibleBefore: Int, output: UnsafeMutablePointer<Float>) {
        guard input.tokens > 1, !shape.kvType.isQuantized else {
            attendOneByOne(layer: layer, input, visibleBefore: visibleBefore, output: output)
            return
        }
        let d = shape.headDim, heads = shape.queryHeads, n = visibleBefore + input.tokens, tokens = input.tokens
        let shape = shape, layerStreams = store.streams[layer]
        Attention.causal(input, streams: layerStreams, visibleBefore: visibleBefore, shape: shape, output: output)
        accumulate(layer: layer, visible: n) { sums in
            nonisolated(unsafe) let sums = sums   // each head's row written by one thread
            ThreadPool.parallelFor(heads) { range in
                let block = 8
                withUnsafeTemporaryAllocation(of: Float.self, capacity: block * n) { buffer in
                    let scores = buffer.baseAddress!
                    for h in range {
                        let row = sums + h * n, keys = layerStreams[h / shape.groupSize].halfKeys
                        for t0 in stride(from: 0, to: tokens, by: block) {
                            let count = min(block, tokens - t0)
                            rk_attn_scores(input.queries + (t0 * heads + h) * d, heads * d, Int32(count), keys, Int32(d), 0,
                                           Int32(visibleBefore + t0 + count), shape.scale, scores, n, 1)
                            for i in 0..<count {
                                let p = scores + i * n, visible = visibleBefore + t0 + i + 1
                                rk_attn_softmax(p, Int32(visible))
                                for j in 0..<visible { row[j] += p[j] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The same, one query at a time through `Attention.subset` (its probabilities and its output), for the cache of
    /// `layer` that already holds the chunk (`visibleBefore` slots before it).
    public func attendOneByOne(layer: Int, _ input: AttentionInput, visibleBefore: Int, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, heads = shape.queryHeads, n = visibleBefore + input.tokens
        let shape = shape
        let layerStreams = store.streams[layer]
        nonisolated(unsafe) let output = output   // each head writes its own rows
        accumulate(layer: layer, visible: n) { sums in
            nonisolated(unsafe) let sums = sums   // each head's row written by one thread
            ThreadPool.parallelFor(heads) { range in
                var probabilities = [Float](repeating: 0, count: n)
                for h in range {
                    let row = sums + h * n
                    for t in 0..<input.tokens {
                        let visible = visibleBefore + t + 1
                        probabilities.withUnsafeMutableBufferPointer { p in
                            Attention.subset(query: input.queries + (t * heads + h) * d, stream: layerStreams[h / shape.groupSize],
                                             slots: nil, count: visible, scale: shape.scale, output: output + (t * heads + h) * d,
                                             batched: input.tokens > 1, probabilities: p.baseAddress!)
                            for j in 0..<visible { row[j] += p[j] }
                        }
                    }
                }
            }
        }
    }

    /// Runs `body` with per-head probability sums `[queryHeads][visible]` (zeros, each head's row written by one
    /// thread), then adds them to the groups' scores, heads in order.
    private func accumulate(layer: Int, visible n: Int, _ body: (_ sums: UnsafeMutablePointer<Float>) -> Void) {
        var perHead = [Float](repeating: 0, count: shape.queryHeads * n)
        perHead.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        for g in 0..<shape.kvHeads {
            var s = scores[layer][g]
            s.append(contentsOf: repeatElement(0, count: n - s.count))
            for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                for j in 0..<n { s[j] += perHead[h * n + j] }
            }
            scores[layer][g] = s
        }
    }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: true)
        for row in scores.joined() {
            s.storedBytes += row.count * 4
            s.bytesReadLastStep += row.count * 4   // each step reads and updates every score
        }
        return s
    }
}
