/// The cache of a model whose layers attend differently: each layer is routed to the cache that serves its
/// kind. Global layers of one shape share one instance of the chosen method; each sliding-window shape gets
/// a `SlidingWindowKV`. The model and the methods see nothing of the routing.
public final class LayeredKV: KVPolicy {
    /// The caches, and for each model layer which cache serves it and as which of its layers.
    public let caches: [KVPolicy]
    private let routes: [(cache: Int, layer: Int)]

    /// `method(layers)` builds the chosen method for a set of global layers of one shape; the sliding-window
    /// caches store `kvType` rows.
    public init(layers: [LayerAttention], kvType: KVCacheType = .f16, method: ([LayerAttention]) throws -> KVPolicy) throws {
        var groups: [LayerAttention] = []
        var members: [[Int]] = []
        for (l, layer) in layers.enumerated() {
            if let g = groups.firstIndex(of: layer) { members[g].append(l) } else { groups.append(layer); members.append([l]) }
        }
        var routes = [(cache: Int, layer: Int)](repeating: (0, 0), count: layers.count)
        for (g, layerIndices) in members.enumerated() {
            for (local, l) in layerIndices.enumerated() { routes[l] = (g, local) }
        }
        caches = try zip(groups, members).map { layer, layerIndices in
            let shared = Array(repeating: layer, count: layerIndices.count)
            switch layer.kind {
            case .global: return try method(shared)
            case .slidingWindow(let window): return SlidingWindowKV(shape: AttentionShape(layers: shared.count, like: layer, kvType: kvType), window: window)
            }
        }
        self.routes = routes
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let route = routes[layer]
        caches[route.cache].prefill(layer: route.layer, input, output: output)
    }

    public func finishPrefill() { for cache in caches { cache.finishPrefill() } }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let route = routes[layer]
        caches[route.cache].decode(layer: route.layer, input, output: output)
    }

    public var statistics: KVStatistics { caches.reduce(KVStatistics()) { $0 + $1.statistics } }

    public var planDescription: String? {
        let plans = caches.compactMap(\.planDescription)
        return plans.isEmpty ? nil : plans.joined(separator: "; ")
    }
}

/// A sliding-window layer's cache: each token attends to the last `window` tokens (itself included), in
/// prefill and decode alike, and older rows are dropped, so memory stays bounded by the window (rows are
/// removed in batches once `2·window` are held, one move of about `window` rows per `window` tokens, always a
/// multiple of `Attention.rowGroup` rows so that slots keep llama.cpp's lanes, see `Attention.causal`).
public final class SlidingWindowKV: KVPolicy, KVStreamInspectable {
    public let store: KVStore
    public let window: Int
    /// Rows the last token of each layer attended to (per stream).
    private var attended: [Int]

    public init(shape: AttentionShape, window: Int) {
        precondition(window >= 1, "a window holds at least one token")
        store = KVStore(shape: shape)
        self.window = window
        attended = Array(repeating: 0, count: shape.layers)
    }

    public func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        let before = store.append(layer: layer, input)
        store.attend(layer: layer, input, visibleBefore: before, output: output, window: window)
        let count = store.count(layer: layer)
        attended[layer] = min(window, count)
        if count >= 2 * window {   // keep the `window − 1` rows the next token sees besides itself, and < rowGroup more
            let dropped = (count - (window - 1)) / Attention.rowGroup * Attention.rowGroup
            for stream in store.streams[layer] { stream.remove(slots: 0..<dropped) }
        }
    }

    public func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        prefill(layer: layer, input, output: output)
    }

    public var statistics: KVStatistics {
        var s = store.statistics(readingAll: false)
        s.bytesReadLastStep = attended.reduce(0, +) * store.shape.kvHeads * store.shape.rowPairBytes
        return s
    }

    public var inspectableStreams: [KVStream] { store.inspectableStreams }
}
