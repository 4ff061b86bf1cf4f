/// How one layer of a model attends: over every earlier token (global) or over a sliding window of the
/// most recent ones, with its head counts, head dimension and logit scale. Models declare one per layer;
/// the KV seam routes each layer to the cache that fits it, so methods never learn why a layer differs.
public struct LayerAttention: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Attends to every earlier token: the layers a KV method compresses.
        case global
        /// Attends to the last `window` tokens (itself included): a bounded cache of its own.
        case slidingWindow(Int)
    }

    public var kind: Kind
    public var queryHeads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// The attention logit scale (1/√headDim unless the architecture says otherwise).
    public var scale: Float

    public init(kind: Kind = .global, queryHeads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil) {
        self.kind = kind
        self.queryHeads = queryHeads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
    }
}

/// Shape of the attention in every layer a KV method serves (all alike: the seam gives a method one shape).
public struct AttentionShape: Sendable, Equatable {
    public let layers: Int
    public let queryHeads: Int
    public let kvHeads: Int
    public let headDim: Int
    /// The attention logit scale.
    public let scale: Float
    /// How the cache stores its key rows and its value rows.
    public let kvType: KVCacheType
    /// Query heads per KV head (GQA group size): query head `h` reads KV head `h / groupSize`.
    public var groupSize: Int { queryHeads / kvHeads }

    /// `scale` defaults to 1/√headDim.
    public init(layers: Int, queryHeads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil, kvType: KVCacheType = .f16) {
        self.layers = layers
        self.queryHeads = queryHeads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.kvType = kvType
    }

    /// `count` layers of `layer`'s shape, stored as `kvType`.
    public init(layers count: Int, like layer: LayerAttention, kvType: KVCacheType = .f16) {
        self.init(layers: count, queryHeads: layer.queryHeads, kvHeads: layer.kvHeads, headDim: layer.headDim, scale: layer.scale,
                  kvType: kvType)
    }

    /// Every layer of this shape, attending globally.
    public var layerAttention: [LayerAttention] {
        Array(repeating: LayerAttention(queryHeads: queryHeads, kvHeads: kvHeads, headDim: headDim, scale: scale), count: layers)
    }

    /// Bytes of one cached token's key and value rows in one KV group.
    public var rowPairBytes: Int { kvType.rowPairBytes(headDim: headDim) }
}

/// Queries, keys and values of one layer for consecutive tokens, after RoPE.
// @unchecked: read-only views of the caller's buffers, valid and unchanged for the layer call that hands them
// out; the pool's tasks of that call only read them.
public struct AttentionInput: @unchecked Sendable {
    /// `[tokens][queryHeads][headDim]`
    public let queries: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let keys: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let values: UnsafePointer<Float>
    public let tokens: Int
    /// Absolute position of the first token (positions count every token ever processed).
    public let firstPosition: Int
    /// False when the caller discards the attention output (a `PrefillSnapshot` replay, whose prompt was
    /// already attended densely); the shared dense path then only stores the chunk.
    public var outputNeeded = true

    public init(queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                tokens: Int, firstPosition: Int) {
        self.queries = queries
        self.keys = keys
        self.values = values
        self.tokens = tokens
        self.firstPosition = firstPosition
    }
}

/// What a policy holds and reads, for the bench and the `--verbose` report.
public struct KVStatistics: Sendable, Equatable {
    /// Cached token slots summed over layers and KV streams.
    public var storedTokens = 0
    /// Bytes of memory held for the cache (keys, values, positions and method metadata).
    public var storedBytes = 0
    /// Bytes of cached keys, values and metadata read by the last decode step, all layers: what the code reads.
    public var bytesReadLastStep = 0
    /// What an ideal implementation of the method would read in that step, where that differs from
    /// `bytesReadLastStep` (`topk`: the 2d·t per group of the paper's oracle, whose code scores every key).
    public var idealBytesReadLastStep: Int?

    public init() {}

    /// The sum of two policies' figures (the layers of a model served by different caches).
    public static func + (a: KVStatistics, b: KVStatistics) -> KVStatistics {
        var s = a
        s.storedTokens += b.storedTokens
        s.storedBytes += b.storedBytes
        s.bytesReadLastStep += b.bytesReadLastStep
        if a.idealBytesReadLastStep != nil || b.idealBytesReadLastStep != nil {
            s.idealBytesReadLastStep = (a.idealBytesReadLastStep ?? a.bytesReadLastStep) + (b.idealBytesReadLastStep ?? b.bytesReadLastStep)
        }
        return s
    }
}

/// A KV-cache method: how a sequence stores keys and values and which of them each attention reads.
///
/// The model calls these methods layer by layer and never knows which method runs. One instance serves
/// one sequence; its memory is released when it is deallocated. Most methods keep their cache in a
/// `KVStore` and hold only their decision: what to keep at the end of a prompt, what to read each step.
public protocol KVPolicy: AnyObject {
    /// Stores a chunk of prompt tokens and computes dense causal attention for it (prefill is never sparse).
    /// `output` receives `[tokens][queryHeads][headDim]`.
    func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>)

    /// Called after the last chunk of a prompt (each turn): the moment for prompt eviction.
    func finishPrefill()

    /// Appends one generated token and attends to the cached tokens the method selects.
    func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>)

    var statistics: KVStatistics { get }

    /// The resolved parameters (budget split, page size, ...) for `--verbose` and the bench, if any.
    var planDescription: String? { get }
}

extension KVPolicy {
    public var planDescription: String? { nil }
    /// Methods that evict nothing at the end of a prompt need not say so.
    public func finishPrefill() {}
}

/// A policy whose cached rows tests and tools can inspect.
public protocol KVStreamInspectable: AnyObject {
    /// Every stream the policy holds now; each cached row lives in exactly one of them.
    var inspectableStreams: [KVStream] { get }
}
