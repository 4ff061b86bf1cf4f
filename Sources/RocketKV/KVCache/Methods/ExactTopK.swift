/// `topk`: the Exact-TopK oracle (spec §8). Keeps the full cache; at every decode step each **query head**
/// attends exactly over the `min(t, N)` cached tokens with its largest attention logits.
///
/// Traffic is reported as what this implementation reads: every key (to score them) plus the values of the
/// union of the group's selections. The paper's oracle traffic, the ideal `2d·min(t, N)` per group (identifying
/// the keys assumed free), is reported beside it as `KVStatistics.idealBytesReadLastStep`.
public final class ExactTopK: KVPolicy, KVStreamInspectable {
    public static let method = KVMethod(
        name: "topk", summary: "Exact-TopK oracle: full cache, each query head attends to its t highest-scoring tokens; reads every key (the ideal 2d·t reported beside it).",
        needsBudget: true) { ExactTopK(shape: $0.shape, budget: try $0.requiredBudget()) }

    public let shape: AttentionShape
    public let budget: Int
    public let store: KVStore
    /// Slots attended by each query head in the last decode step, ascending: `[layer][queryHead]`.
    public private(set) var lastSelection: [[[Int32]]]
    private var realRead: [Int]

    public init(shape: AttentionShape, budget: Int) {
        self.shape = shape
        self.budget = budget
        store = KVStore(shape: shape)
        lastSelection = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
        realRead = Array(repeating: 0, count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.append(layer: layer, input)
        let layerStreams = store.streams[layer]
        let d = shape.headDim, n = store.count(layer: layer)
        let shape = shape, budget = budget
        nonisolated(unsafe) let output = output   // each head writes its own row
        var selections = [[Int32]](repeating: [], count: shape.queryHeads)
        selections.withUnsafeMutableBufferPointer { selected in
            nonisolated(unsafe) let selected = selected   // each head writes its own element
            ThreadPool.parallelFor(shape.queryHeads) { heads in
                var scores = [Float](repeating: 0, count: n)
                for h in heads {
                    let stream = layerStreams[h / shape.groupSize], query = input.queries + h * d
                    scores.withUnsafeMutableBufferPointer {
                        Attention.logits(query: query, stream: stream, count: n, scale: shape.scale, into: $0.baseAddress!)
                    }
                    let slots = KVSelect.topIndices(scores, budget).map { Int32($0) }
                    slots.withUnsafeBufferPointer {
                        Attention.subset(query: query, stream: stream, slots: $0.baseAddress, count: $0.count, scale: shape.scale, output: output + h * d)
                    }
                    selected[h] = slots
                }
            }
        }
        lastSelection[layer] = selections
        var read = 0
        for g in 0..<shape.kvHeads {
            let union = Set(selections[(g * shape.groupSize)..<((g + 1) * shape.groupSize)].joined())
            read += (n + union.count) * d * 2
        }
        realRead[layer] = read
    }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: false)
        // Every key of each group, plus the values of the union of its heads' selections (ExactTopK.decode).
        s.bytesReadLastStep = realRead.reduce(0, +)
        // The oracle's ideal traffic: K and V rows of min(t, N) tokens per group.
        s.idealBytesReadLastStep = store.inspectableStreams.reduce(0) { $0 + min(budget, $1.count) * shape.rowPairBytes }
        return s
    }
}
