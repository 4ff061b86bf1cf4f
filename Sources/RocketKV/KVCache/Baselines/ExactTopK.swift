/// `topk`: the Exact-TopK oracle (spec §8). Keeps the full cache; at every decode step each **query head**
/// attends exactly over the `min(t, N)` cached tokens with its largest attention logits.
///
/// Traffic is reported as the paper's oracle does: the ideal `2d·min(t, N)` per group (identifying the
/// keys is assumed free). `realBytesReadLastStep` gives what this implementation actually reads: every key
/// (to score them) plus the values of the union of the group's selections.
public final class ExactTopK: KVPolicy, KVStreamInspectable {
    public let shape: AttentionShape
    public let budget: Int
    /// `streams[layer][kvHead]`
    private let streams: [[KVStream]]
    /// Slots attended by each query head in the last decode step, ascending: `[layer][queryHead]`.
    public private(set) var lastSelection: [[[Int32]]]
    private var realRead: [Int]

    public init(shape: AttentionShape, budget: Int) {
        self.shape = shape
        self.budget = budget
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
        lastSelection = Array(repeating: Array(repeating: [], count: shape.queryHeads), count: shape.layers)
        realRead = Array(repeating: 0, count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let layerStreams = streams[layer]
        let before = layerStreams[0].count
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        causalAttention(input, streams: layerStreams, visibleBefore: before, shape: shape, output: output)
    }

    public func finishPrefill() {}

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        let layerStreams = streams[layer]
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        let d = shape.headDim, n = layerStreams[0].count
        var selections = [[Int32]](repeating: [], count: shape.queryHeads)
        selections.withUnsafeMutableBufferPointer { selected in
            ThreadPool.parallelFor(shape.queryHeads) { heads in
                var scores = [Float](repeating: 0, count: n)
                for h in heads {
                    let stream = layerStreams[h / shape.groupSize], query = input.queries + h * d
                    scores.withUnsafeMutableBufferPointer {
                        Attention.logits(query: query, stream: stream, count: n, scale: shape.scale, into: $0.baseAddress!)
                    }
                    let slots = KVSelect.topIndices(scores, budget).map { Int32($0) }
                    slots.withUnsafeBufferPointer {
                        Attention.sparse(query: query, stream: stream, slots: $0, scale: shape.scale, output: output + h * d)
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

    public var inspectableStreams: [KVStream] { Array(streams.joined()) }

    /// Bytes this implementation really read in the last decode step: all keys plus the selected values.
    public var realBytesReadLastStep: Int { realRead.reduce(0, +) }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        s.add(inspectableStreams, read: false)
        // The oracle's ideal traffic: K and V rows of min(t, N) tokens per group.
        for stream in streams.joined() { s.bytesReadLastStep += min(budget, stream.count) * stream.headDim * 2 * 2 }
        return s
    }
}
