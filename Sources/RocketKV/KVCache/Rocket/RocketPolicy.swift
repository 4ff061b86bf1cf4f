/// `rocket`: RocketKV (ROCKETKV.md §2–§5). At the end of every prompt, stage 1 (GQA-shared SnapKV, κ = 63)
/// keeps `B_p` tokens per layer and KV group and releases the memory of the others (`KVStream.retain`);
/// every decode step appends its token and attends with HSA over the compressed cache.
///
/// In a chat, each turn's prefill attends over the compressed history plus the new prompt and stage 1
/// re-compresses both back to `B_p` (§6, last paragraph: evicted tokens never come back). Parameters are
/// planned once, from the first prompt.
public final class RocketPolicy: KVPolicy {
    public let shape: AttentionShape
    public let plan: RocketPlan
    private let cache: PagedKV
    private let window: QueryWindow

    public init(shape: AttentionShape, plan: RocketPlan) {
        self.shape = shape
        self.plan = plan
        cache = PagedKV(shape: shape, pageSize: plan.pageSize)
        window = QueryWindow(layers: shape.layers, window: plan.window, queryHeads: shape.queryHeads, headDim: shape.headDim)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        cache.prefill(layer: layer, input, output: output)
        window.record(layer: layer, input)
    }

    public func finishPrefill() {
        let G = shape.groupSize, d = shape.headDim, spare = plan.maxNewTokens + 1
        ThreadPool.parallelFor(shape.layers * shape.kvHeads) { units in
            for unit in units {
                let l = unit / shape.kvHeads, g = unit % shape.kvHeads
                let stream = cache.streams[l][g]
                let rows = window.count(layer: l)
                if rows > 0 && stream.count > plan.promptBudget {
                    let queries = window.groupRows(layer: l, group: g, groupSize: G, headDim: d)
                    let kept = queries.withUnsafeBufferPointer { q in
                        RocketStage1.keptSlots(windowQueries: q.baseAddress!, windowRows: rows, groupSize: G,
                                               keys: .f16(stream.keys), count: stream.count, headDim: d, scale: shape.scale,
                                               promptBudget: plan.promptBudget, kernel: plan.kernel)
                    }
                    stream.retain(slots: kept)
                    cache.metadata[l][g].release()
                }
                stream.reserve(stream.count + spare)
                cache.sync(layer: l, group: g, spare: spare)
            }
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
}
