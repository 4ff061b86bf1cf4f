/// The cached keys and values of one sequence in the layers one KV method serves: a `KVStream` per layer and
/// stream, appended chunk by chunk, with the dense causal attention every prefill uses, eviction that
/// releases memory, and the base statistics. Methods compose it and add only their decision.
///
/// Normally there is one stream per KV group. `copiesPerGroup > 1` gives each query head of a group its
/// own stream (SnapKV's per-head selections): stream `s` then takes the rows of KV group `s / copiesPerGroup`
/// and is attended by query head `s` alone.
public final class KVStore: KVStreamInspectable {
    /// The shape of the layers served.
    public let shape: AttentionShape
    public let copiesPerGroup: Int
    /// `streams[layer][stream]`
    public private(set) var streams: [[KVStream]]
    /// Called after each append with the layer, stream and slots appended: how a method keeps its per-row
    /// metadata (page bounds, a transposed key copy, value sums) beside the rows.
    public var didAppend: ((_ layer: Int, _ stream: Int, _ slots: Range<Int>) -> Void)?

    public init(shape: AttentionShape, copiesPerGroup: Int = 1) {
        precondition(copiesPerGroup == 1 || copiesPerGroup == shape.groupSize, "one stream per KV group or per query head")
        self.shape = shape
        self.copiesPerGroup = copiesPerGroup
        streams = (0..<shape.layers).map { _ in (0..<(shape.kvHeads * copiesPerGroup)).map { _ in KVStream(headDim: shape.headDim, kvType: shape.kvType) } }
    }

    /// The shape attention sees: with a stream per query head, every head is its own group.
    public var streamShape: AttentionShape {
        copiesPerGroup == 1 ? shape
            : AttentionShape(layers: shape.layers, queryHeads: shape.queryHeads, kvHeads: shape.queryHeads, headDim: shape.headDim, scale: shape.scale,
                             kvType: shape.kvType)
    }

    /// Slots held in `layer` (every stream of a layer holds as many, except after per-stream eviction).
    public func count(layer: Int) -> Int { streams[layer][0].count }

    /// Appends the chunk to every stream of the layer and returns the slots it held before.
    @discardableResult
    public func append(layer: Int, _ input: AttentionInput) -> Int {
        let before = count(layer: layer)
        for (s, stream) in streams[layer].enumerated() {
            stream.append(input, head: s / copiesPerGroup, kvHeads: shape.kvHeads)
            didAppend?(layer, s, before..<stream.count)
        }
        return before
    }

    /// Causal attention of a chunk already appended, over everything the layer holds (`window`: the last
    /// `window` slots of each query only).
    public func attend(layer: Int, _ input: AttentionInput, visibleBefore: Int, output: UnsafeMutablePointer<Float>, window: Int? = nil) {
        Attention.causal(input, streams: streams[layer], visibleBefore: visibleBefore, shape: streamShape, output: output, window: window)
    }

    /// The dense prefill: appends the chunk and attends causally over everything held. Methods that read
    /// every token they keep use it for decode too.
    public func appendAndAttend(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let before = append(layer: layer, input)
        attend(layer: layer, input, visibleBefore: before, output: output)
    }

    /// Keeps only `slots` of one stream, in that order, and releases the memory of the others.
    public func retain(layer: Int, stream: Int, slots: [Int]) { streams[layer][stream].retain(slots: slots) }

    /// Gives every query head its own copy of its group's kept rows (`kept[layer][queryHead]`): the store
    /// switches to one stream per query head (`copiesPerGroup = groupSize`) and frees the shared streams.
    func splitPerHead(kept: [[[Int]]]) -> KVStore {
        precondition(copiesPerGroup == 1, "already split")
        let split = KVStore(shape: shape, copiesPerGroup: shape.groupSize)
        for layer in 0..<shape.layers {
            for h in 0..<shape.queryHeads {
                split.streams[layer][h].copyRows(of: streams[layer][h / shape.groupSize], slots: kept[layer][h])
            }
        }
        return split
    }

    public var inspectableStreams: [KVStream] { Array(streams.joined()) }

    /// Tokens and bytes held; with `readingAll`, every held row counts as read by the last step (methods that
    /// attend to everything they keep).
    public func statistics(readingAll: Bool) -> KVStatistics {
        var s = KVStatistics()
        for stream in streams.joined() {
            s.storedTokens += stream.count
            s.storedBytes += stream.allocatedBytes
            if readingAll { s.bytesReadLastStep += stream.count * shape.rowPairBytes }
        }
        return s
    }
}
