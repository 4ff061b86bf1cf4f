/// `rocket`: RocketKV (ROCKETKV.md §2–§5). At the end of every prompt, stage 1 (GQA-shared SnapKV, κ = 63)
/// keeps `B_p` tokens per layer and KV group and releases the memory of the others (`KVStream.retain`);
/// every decode step appends its token and attends with HSA over the compressed cache.
///
/// In a chat, each turn's prefill attends over the compressed history plus the new prompt and stage 1
/// re-compresses both back to `B_p` (§6, last paragraph: evicted tokens never come back). Parameters are
/// planned once, from the first prompt.
public final class RocketPolicy: KVPolicy, KVStreamInspectable {
    public static let windowOption = KVOption("window", default: 32, "SnapKV observation window w")
    public static let method = KVMethod(
        name: "rocket", summary: "RocketKV: GQA-shared SnapKV eviction (κ = 63) at the end of the prompt, then HSA every decode step; budget split adaptively.",
        options: RocketPlan.rocketOptions(window: windowOption), needsBudget: true) { context in
        RocketPolicy(shape: context.shape, plan: try .rocket(context, window: windowOption))
    }

    public let plan: RocketPlan
    private let cache: PagedKV
    private let window: QueryWindow
    public var shape: AttentionShape { cache.shape }

    public init(shape: AttentionShape, plan: RocketPlan) {
        self.plan = plan
        cache = PagedKV(shape: shape, pageSize: plan.pageSize)
        window = QueryWindow(layers: shape.layers, window: plan.window, queryHeads: shape.queryHeads, headDim: shape.headDim)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.store.appendAndAttend(layer: layer, input, output: output)
        window.record(layer: layer, input)
    }

    public func finishPrefill() {
        let spare = plan.maxNewTokens + 1
        let kept = StageOne.keptSlots(store: cache.store, window: window, plan: plan)
        let kvHeads = shape.kvHeads, cache = cache
        cache.forEachGroup { l, g, stream in
            if let kept = kept[l * kvHeads + g] {
                stream.retain(slots: kept)
                cache.metadata[l][g].release()
            }
            stream.reserve(stream.count + spare)
            cache.sync(layer: l, group: g, spare: spare)
        }
        window.reset()
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.decode(layer: layer, input, k1: plan.k1, k2: plan.k2, output: output)
    }

    public var statistics: KVStatistics {
        var s = cache.statistics
        s.storedBytes += window.allocatedBytes
        return s
    }

    public var inspectableStreams: [KVStream] { cache.store.inspectableStreams }
}
