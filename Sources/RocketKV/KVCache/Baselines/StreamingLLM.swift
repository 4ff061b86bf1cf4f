/// `streaming`: StreamingLLM (spec §9.5): attention sinks (the first `sinks` tokens) plus a sliding window of
/// the most recent `t − sinks` tokens, per KV head. Everything in between is evicted and its memory released.
///
/// Keys stay cached post-RoPE at their original absolute positions (the variant consistent with the spec,
/// not the original's cache-position re-indexing). Prefill is dense over everything it has; at
/// `finishPrefill` the cache is trimmed to the budget, and each decode step appends its token, evicts the
/// oldest non-sink token when over budget, then attends densely over the `≤ t` tokens kept (the new one included).
public final class StreamingLLM: KVPolicy, KVStreamInspectable {
    public let shape: AttentionShape
    public let budget: Int
    public let sinks: Int
    /// `streams[layer][kvHead]`
    private let streams: [[KVStream]]

    public init(shape: AttentionShape, budget: Int, sinks: Int = 4) {
        precondition(sinks >= 0 && sinks < budget, "sinks must be below the budget")
        self.shape = shape
        self.budget = budget
        self.sinks = sinks
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let layerStreams = streams[layer]
        let before = layerStreams[0].count
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        causalAttention(input, streams: layerStreams, visibleBefore: before, shape: shape, output: output)
    }

    public func finishPrefill() {
        for stream in streams.joined() where stream.count > budget {
            let evicted = evictedSlots(count: stream.count)   // released: the prompt is usually far longer
            stream.retain(slots: Array(0..<evicted.lowerBound) + Array(evicted.upperBound..<stream.count))
            stream.reserve(budget + 1)   // room for each decode step's token before its eviction
        }
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        let layerStreams = streams[layer]
        for (h, stream) in layerStreams.enumerated() {
            stream.append(input, head: h, kvHeads: shape.kvHeads)
            if stream.count > budget { stream.remove(slots: evictedSlots(count: stream.count)) }   // in place
        }
        causalAttention(input, streams: layerStreams, visibleBefore: layerStreams[0].count - 1, shape: shape, output: output)
    }

    /// Of `count > budget` slots, the ones between the sinks `0..<sinks` and the last `budget − sinks`.
    private func evictedSlots(count: Int) -> Range<Int> { sinks..<(count - (budget - sinks)) }

    public var inspectableStreams: [KVStream] { Array(streams.joined()) }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        s.add(inspectableStreams, read: true)
        return s
    }
}
