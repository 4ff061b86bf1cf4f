/// `streaming`: StreamingLLM (spec §9.5): attention sinks (the first `sinks` tokens) plus a sliding window of
/// the most recent `t − sinks` tokens, per KV head. Everything in between is evicted and its memory released.
///
/// Keys stay cached post-RoPE at their original absolute positions (the variant consistent with the spec,
/// not the original's cache-position re-indexing). Prefill is dense over everything it has; at
/// `finishPrefill` the cache is trimmed to the budget, and each decode step appends its token, evicts the
/// oldest non-sink token when over budget, then attends densely over the `≤ t` tokens kept (the new one included).
public final class StreamingLLM: KVPolicy, KVStreamInspectable {
    static let sinksOption = KVOption("sinks", default: 4, "number of sink tokens kept from the start")
    public static let method = KVMethod(
        name: "streaming", summary: "StreamingLLM: attention sinks plus the most recent tokens, t in all; the rest is evicted.",
        options: [sinksOption], needsBudget: true) { context in
        let budget = try context.requiredBudget()
        return StreamingLLM(shape: context.shape, budget: budget, sinks: try context.int(sinksOption, range: 0...(budget - 1)))
    }

    public let budget: Int
    public let sinks: Int
    public let store: KVStore

    public init(shape: AttentionShape, budget: Int, sinks: Int = 4) {
        precondition(sinks >= 0 && sinks < budget, "sinks must be below the budget")
        self.budget = budget
        self.sinks = sinks
        store = KVStore(shape: shape)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func finishPrefill() {
        for stream in store.inspectableStreams where stream.count > budget {
            let evicted = evictedSlots(count: stream.count)   // released: the prompt is usually far longer
            stream.retain(slots: Array(0..<evicted.lowerBound) + Array(evicted.upperBound..<stream.count))
            stream.reserve(budget + 1)   // room for each decode step's token before its eviction
        }
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        store.append(layer: layer, input)
        for stream in store.streams[layer] where stream.count > budget {
            stream.remove(slots: evictedSlots(count: stream.count))   // in place
        }
        store.attend(layer: layer, input, visibleBefore: store.count(layer: layer) - 1, output: output)
    }

    /// Of `count > budget` slots, the ones between the sinks `0..<sinks` and the last `budget − sinks`.
    private func evictedSlots(count: Int) -> Range<Int> { sinks..<(count - (budget - sinks)) }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }
    public var statistics: KVStatistics { store.statistics(readingAll: true) }
}
