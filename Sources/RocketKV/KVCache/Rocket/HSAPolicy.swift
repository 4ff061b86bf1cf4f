/// `hsa`: Hybrid Sparse Attention alone (ROCKETKV.md §9.8, §16.7) — stage 2 on the full, never-evicted cache.
///
/// Every token is kept; page metadata covers the whole cache and is extended at the end of each prompt and at
/// every decode step; each decode step attends exactly to the `k2` tokens HSA selects.
public final class HSAPolicy: KVPolicy, KVStreamInspectable {
    public static let method = KVMethod(
        name: "hsa", summary: "Hybrid Sparse Attention alone (RocketKV stage 2, ρ = 0): full cache, page min/max scores on k1 dims, exact attention over t/2 tokens.",
        options: RocketPlan.hsaOptions, needsBudget: true) { HSAPolicy(shape: $0.shape, plan: try .hsa($0)) }

    public let plan: RocketPlan
    private let cache: PagedKV
    public var shape: AttentionShape { cache.shape }

    public init(shape: AttentionShape, plan: RocketPlan) {
        self.plan = plan
        cache = PagedKV(shape: shape, pageSize: plan.pageSize)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.store.appendAndAttend(layer: layer, input, output: output)
    }

    public func finishPrefill() {
        for l in 0..<cache.shape.layers {
            for g in 0..<cache.shape.kvHeads { cache.sync(layer: l, group: g, spare: plan.maxNewTokens + 1) }
        }
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.decode(layer: layer, input, k1: plan.k1, k2: plan.k2, output: output)
    }

    public var statistics: KVStatistics { cache.statistics }
    public var inspectableStreams: [KVStream] { cache.store.inspectableStreams }
}
