/// `rocket-mt`: RocketKV-MT (ROCKETKV.md §6). Nothing is ever evicted: the full cache `F` keeps every token
/// of every turn. At the end of each turn's prompt, stage 1 runs over the whole `F` (window = the last `w`
/// tokens of this turn's prompt) and selects the filtered set `R` for this turn's decode; generated tokens are
/// appended to both `F` and `R`; each decode step runs HSA over `R` only.
///
/// `R` is an index list into `F` (4-byte slot numbers), not a copy of its keys and values: storage is `F` +
/// the index list + page metadata over `R`. The traffic per step is RocketKV's plus the 4-byte index of each
/// attended token. Parameters are planned once, from the first turn.
public final class RocketMTPolicy: KVPolicy, KVStreamInspectable {
    public static let windowOption = KVOption("window", default: 128, "SnapKV observation window w")
    public static let method = KVMethod(
        name: "rocket-mt", summary: "RocketKV-MT: keeps the full cache, re-selects the stage-1 subset from all of it every turn, HSA over that subset.",
        options: RocketPlan.rocketOptions(window: windowOption), needsBudget: true) { context in
        RocketMTPolicy(shape: context.shape, plan: try .rocket(context, window: windowOption))
    }

    public let plan: RocketPlan
    /// `F` (the store) and page metadata over `R`'s slots.
    private let cache: PagedKV
    /// `R`: slots of `F`, per layer and KV group.
    private var filtered: [[[Int32]]]
    private let window: QueryWindow
    public var shape: AttentionShape { cache.shape }

    public init(shape: AttentionShape, plan: RocketPlan) {
        self.plan = plan
        cache = PagedKV(shape: shape, pageSize: plan.pageSize)
        filtered = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        window = QueryWindow(layers: shape.layers, window: plan.window, queryHeads: shape.queryHeads, headDim: shape.headDim)
    }

    /// The filtered set `R` (slots of `F`) of a layer and KV group, for tests and diagnostics.
    public func filteredSlots(layer: Int, group: Int) -> [Int32] { filtered[layer][group] }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.store.appendAndAttend(layer: layer, input, output: output)
        window.record(layer: layer, input)
    }

    public func finishPrefill() {
        let spare = plan.maxNewTokens + 1
        let selected = StageOne.keptSlots(store: cache.store, window: window, plan: plan)
        let shape = shape, cache = cache
        // R: stage 1's selection, or all of F where nothing was evicted, with room for this turn's tokens.
        let filtered: [[[Int32]]] = (0..<shape.layers).map { l in
            (0..<shape.kvHeads).map { g in
                var slots = [Int32]()
                let kept = selected[l * shape.kvHeads + g] ?? Array(0..<cache.store.streams[l][g].count)
                slots.reserveCapacity(kept.count + spare)
                slots.append(contentsOf: kept.map { Int32($0) })
                return slots
            }
        }
        cache.forEachGroup { l, g, stream in
            let meta = cache.metadata[l][g], slots = filtered[l][g]
            meta.release()
            meta.reserve(tokens: slots.count + spare)
            for s in slots { meta.append(slot: Int(s), of: stream) }
        }
        self.filtered = filtered
        window.reset()
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let streams = cache.store.streams[layer], metadata = cache.metadata[layer]
        for (g, stream) in streams.enumerated() { filtered[layer][g].append(Int32(stream.count)) }   // the slot the token goes to
        cache.decode(layer: layer, input, k1: plan.k1, k2: plan.k2, slotMaps: filtered[layer], output: output) { g in
            metadata[g].append(slot: streams[g].count - 1, of: streams[g])
        }
        // Plus the index of every attended token.
        cache.bytesRead[layer] += shape.kvHeads * min(plan.k2, filtered[layer][0].count) * 4
    }

    public var statistics: KVStatistics {
        var s = cache.statistics
        for slots in filtered.joined() { s.storedBytes += slots.count * 4 }
        s.storedBytes += window.allocatedBytes
        return s
    }

    public var inspectableStreams: [KVStream] { cache.store.inspectableStreams }
}
