/// A `KVStore` plus HSA page metadata over each group's slots, and the HSA decode step: the storage the
/// `hsa`, `rocket` and `rocket-mt` policies compose.
// @unchecked: unsynchronized; inside pool jobs its tasks only read it and `sync` distinct (layer, group)s,
// which mutates that group's stream and metadata, not the PagedKV.
final class PagedKV: @unchecked Sendable {
    let store: KVStore
    /// `metadata[layer][kvHead]`: over the slots of the matching stream, or (RocketKV-MT) over a list of them.
    let metadata: [[PageMetadata]]
    /// Bytes read by the last decode step, per layer.
    var bytesRead: [Int]
    private let hsa: HSALayerStep

    init(shape: AttentionShape, pageSize: Int) {
        store = KVStore(shape: shape)
        // Bounds as exact as an f16 cache's keys, or int8 beside a quantized cache (half the bytes; still true bounds).
        let precision: PageMetadata.Precision = shape.kvType == .f16 ? .f16 : .q8
        metadata = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageMetadata(headDim: shape.headDim, pageSize: pageSize, precision: precision) } }
        bytesRead = Array(repeating: 0, count: shape.layers)
        hsa = HSALayerStep(shape: shape)
    }

    var shape: AttentionShape { store.shape }

    /// Brings the metadata of `(layer, group)` up to date with its stream (append-only, §4.2), reserving room
    /// for `spare` more tokens when it has to grow.
    func sync(layer: Int, group: Int, spare: Int = 0) {
        let stream = store.streams[layer][group], meta = metadata[layer][group]
        meta.reserve(tokens: stream.count + spare)
        meta.extend(covering: stream)
    }

    /// Runs `body` once for every (layer, KV group) and its stream, on the pool.
    func forEachGroup(_ body: @Sendable (_ layer: Int, _ group: Int, _ stream: KVStream) -> Void) {
        let streams = store.streams, kvHeads = shape.kvHeads
        ThreadPool.parallelFor(shape.layers * kvHeads) { units in
            for unit in units {
                let l = unit / kvHeads, g = unit % kvHeads
                body(l, g, streams[l][g])
            }
        }
    }

    /// Appends the decode token, then attends with HSA (§2 step 3), or densely while every stream holds at most
    /// `k2` slots (HSA would select them all). `update(g)` brings group g's metadata up to date with the token
    /// first; `slotMaps[g]`, when given, maps metadata slots to stream slots.
    func decode(layer: Int, _ input: AttentionInput, k1: Int, k2: Int, slotMaps: [[Int32]]? = nil, output: UnsafeMutablePointer<Float>,
                update: @Sendable (Int) -> Void) {
        precondition(input.tokens == 1, "decode takes one token")
        let before = store.append(layer: layer, input)
        let streams = store.streams[layer]
        if slotMaps == nil, streams.allSatisfy({ $0.count <= k2 }) {
            // k2' = min(k2, N) = N (§4.3 step 9): every slot is selected, so the scores cannot change the result.
            // Dense attention in slot order (the set is the same; §4.3 leaves the order free), as `full` does.
            for g in streams.indices { update(g) }
            store.attend(layer: layer, input, visibleBefore: before, output: output)
            bytesRead[layer] = streams.reduce(0) { $0 + $1.count * shape.rowPairBytes }
            return
        }
        bytesRead[layer] = hsa.run(input, streams: streams, metadata: metadata[layer], slotMaps: slotMaps, k1: k1, k2: k2,
                                   output: output, update: update)
    }

    /// Appends the decode token with metadata over the stream slots.
    func decode(layer: Int, _ input: AttentionInput, k1: Int, k2: Int, output: UnsafeMutablePointer<Float>) {
        decode(layer: layer, input, k1: k1, k2: k2, output: output) { self.sync(layer: layer, group: $0) }
    }

    var statistics: KVStatistics {
        var s = store.statistics(readingAll: false)
        for meta in metadata.joined() { s.storedBytes += meta.allocatedBytes }
        s.bytesReadLastStep = bytesRead.reduce(0, +)
        return s
    }
}
