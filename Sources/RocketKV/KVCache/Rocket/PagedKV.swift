/// Cached keys/values of every layer and KV group plus HSA page metadata over them, and the HSA decode step:
/// the storage shared by the `hsa` and `rocket` policies.
final class PagedKV {
    let shape: AttentionShape
    /// `streams[layer][kvHead]`
    let streams: [[KVStream]]
    /// `metadata[layer][kvHead]`, over the slots of the matching stream.
    let metadata: [[PageMetadata]]
    /// Bytes read by the last decode step, per layer.
    var bytesRead: [Int]
    private let hsa: HSALayerStep

    init(shape: AttentionShape, pageSize: Int) {
        self.shape = shape
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
        metadata = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in PageMetadata(headDim: shape.headDim, pageSize: pageSize, precision: .f16) } }
        bytesRead = Array(repeating: 0, count: shape.layers)
        hsa = HSALayerStep(shape: shape)
    }

    /// Appends a chunk and runs dense causal attention over the layer's streams (the prefill path).
    func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let layerStreams = streams[layer]
        let before = layerStreams[0].count
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        causalAttention(input, streams: layerStreams, visibleBefore: before, shape: shape, output: output)
    }

    /// Brings the metadata of `(layer, group)` up to date with its stream (append-only, §4.2), reserving room
    /// for `spare` more tokens when it has to grow.
    func sync(layer: Int, group: Int, spare: Int = 0) {
        let stream = streams[layer][group], meta = metadata[layer][group]
        meta.reserve(tokens: stream.count + spare)
        while meta.tokens < stream.count { meta.append(halfKey: stream.keys + meta.tokens * shape.headDim) }
    }

    /// Appends the decode token, updates the metadata, then attends with HSA (§2 step 3).
    func decode(layer: Int, _ input: AttentionInput, k1: Int, k2: Int, output: UnsafeMutablePointer<Float>) {
        precondition(input.tokens == 1, "decode takes one token")
        for (g, stream) in streams[layer].enumerated() { stream.append(input, head: g, kvHeads: shape.kvHeads) }
        bytesRead[layer] = hsa.run(input, streams: streams[layer], metadata: metadata[layer], slotMaps: nil, k1: k1, k2: k2,
                                   output: output) { self.sync(layer: layer, group: $0) }
    }

    var statistics: KVStatistics {
        var s = KVStatistics()
        for stream in streams.joined() {
            s.storedTokens += stream.count
            s.storedBytes += stream.allocatedBytes
        }
        for meta in metadata.joined() { s.storedBytes += meta.allocatedBytes }
        s.bytesReadLastStep = bytesRead.reduce(0, +)
        return s
    }
}
