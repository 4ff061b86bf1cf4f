/// `rocket-mt`: RocketKV-MT (ROCKETKV.md §6). Nothing is ever evicted: the full cache `F` keeps every token
/// of every turn. At the end of each turn's prompt, stage 1 runs over the whole `F` (window = the last `w`
/// tokens of this turn's prompt) and selects the filtered set `R` for this turn's decode; generated tokens are
/// appended to both `F` and `R`; each decode step runs HSA over `R` only.
///
/// `R` is an index list into `F` (4-byte slot numbers), not a copy of its keys and values: storage is `F` +
/// the index list + page metadata over `R`. The traffic per step is RocketKV's plus the 4-byte index of each
/// attended token. Parameters are planned once, from the first turn.
public final class RocketMTPolicy: KVPolicy {
    public let shape: AttentionShape
    public let plan: RocketPlan
    /// `F`: `full[layer][kvHead]`
    private let full: [[KVStream]]
    /// `R`: slots of `F`, per layer and KV group.
    private var filtered: [[[Int32]]]
    /// Page metadata over `R`'s slots.
    private let metadata: [[PageMetadata]]
    private let window: QueryWindow
    private var bytesRead: [Int]
    private let hsa: HSALayerStep

    public init(shape: AttentionShape, plan: RocketPlan) {
        self.shape = shape
        self.plan = plan
        full = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
        filtered = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        metadata = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageMetadata(headDim: shape.headDim, pageSize: plan.pageSize, precision: .f16) } }
        window = QueryWindow(layers: shape.layers, window: plan.window, queryHeads: shape.queryHeads, headDim: shape.headDim)
        bytesRead = Array(repeating: 0, count: shape.layers)
        hsa = HSALayerStep(shape: shape)
    }

    /// The filtered set `R` (slots of `F`) of a layer and KV group, for tests and diagnostics.
    public func filteredSlots(layer: Int, group: Int) -> [Int32] { filtered[layer][group] }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let layerStreams = full[layer]
        let before = layerStreams[0].count
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        causalAttention(input, streams: layerStreams, visibleBefore: before, shape: shape, output: output)
        window.record(layer: layer, input)
    }

    public func finishPrefill() {
        let G = shape.groupSize, d = shape.headDim, spare = plan.maxNewTokens + 1
        var result = filtered
        result.withUnsafeMutableBufferPointer { out in
            let out = out.baseAddress!
            ThreadPool.parallelFor(shape.layers * shape.kvHeads) { units in
                for unit in units {
                    let l = unit / shape.kvHeads, g = unit % shape.kvHeads
                    let stream = full[l][g], rows = window.count(layer: l)
                    var kept: [Int]
                    if rows > 0 && stream.count > plan.promptBudget {
                        let queries = window.groupRows(layer: l, group: g, groupSize: G, headDim: d)
                        kept = queries.withUnsafeBufferPointer { q in
                            RocketStage1.keptSlots(windowQueries: q.baseAddress!, windowRows: rows, groupSize: G,
                                                   keys: .f16(stream.keys), count: stream.count, headDim: d,
                                                   scale: shape.scale, promptBudget: plan.promptBudget, kernel: plan.kernel)
                        }
                    } else {
                        kept = Array(0..<stream.count)
                    }
                    var slots = [Int32]()
                    slots.reserveCapacity(kept.count + spare)
                    slots.append(contentsOf: kept.map { Int32($0) })
                    (out + l).pointee[g] = slots
                    let meta = metadata[l][g]
                    meta.release()
                    meta.reserve(tokens: kept.count + spare)
                    for s in kept { meta.append(halfKey: stream.keys + s * d) }
                }
            }
        }
        filtered = result
        window.reset()
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        for (g, stream) in full[layer].enumerated() {
            stream.append(input, head: g, kvHeads: shape.kvHeads)
            filtered[layer][g].append(Int32(stream.count - 1))
        }
        let streams = full[layer], layerMetadata = metadata[layer], d = shape.headDim
        let bytes = hsa.run(input, streams: streams, metadata: layerMetadata, slotMaps: filtered[layer],
                            k1: plan.k1, k2: plan.k2, output: output) { g in
            layerMetadata[g].append(halfKey: streams[g].keys + (streams[g].count - 1) * d)
        }
        // Plus the index of every attended token.
        bytesRead[layer] = bytes + shape.kvHeads * min(plan.k2, filtered[layer][0].count) * 4
    }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        for stream in full.joined() {
            s.storedTokens += stream.count
            s.storedBytes += stream.allocatedBytes
        }
        for slots in filtered.joined() { s.storedBytes += slots.count * 4 }
        for meta in metadata.joined() { s.storedBytes += meta.allocatedBytes }
        s.storedBytes += window.allocatedBytes
        s.bytesReadLastStep = bytesRead.reduce(0, +)
        return s
    }
}
