/// `full`: keeps every token and attends densely to all of them (the baseline).
public final class FullKV: KVPolicy {
    public let shape: AttentionShape
    /// `streams[layer][kvHead]`
    private let streams: [[KVStream]]

    public init(shape: AttentionShape) {
        self.shape = shape
        streams = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in KVStream(headDim: shape.headDim) } }
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let layerStreams = streams[layer]
        let before = layerStreams[0].count
        for (h, stream) in layerStreams.enumerated() { stream.append(input, head: h, kvHeads: shape.kvHeads) }
        causalAttention(input, streams: layerStreams, visibleBefore: before, shape: shape, output: output)
    }

    public func finishPrefill() {}

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        prefill(layer: layer, input, output: output)
    }

    public var statistics: KVStatistics {
        var s = KVStatistics()
        for stream in streams.joined() {
            s.storedTokens += stream.count
            s.storedBytes += stream.allocatedBytes
            s.bytesReadLastStep += stream.count * stream.headDim * 2 * 2
        }
        return s
    }
}

extension FullKV: KVStreamInspectable {
    public var inspectableStreams: [KVStream] { Array(streams.joined()) }
}
