/// `full`: keeps every token and attends densely to all of them (the baseline).
public final class FullKV: KVPolicy, KVStreamInspectable {
    public static let method = KVMethod(name: "full", summary: "Full KV cache, dense attention over every token (the baseline).",
                                        needsBudget: false) { FullKV(shape: $0.shape) }

    public let store: KVStore

    public init(shape: AttentionShape) { store = KVStore(shape: shape) }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    public var statistics: KVStatistics { store.statistics(readingAll: true) }
    public var inspectableStreams: [KVStream] { store.inspectableStreams }
}
