/// Shape of the attention in every layer of a model.
public struct AttentionShape: Sendable, Equatable {
    public let layers: Int
    public let queryHeads: Int
    public let kvHeads: Int
    public let headDim: Int
    /// Query heads per KV head (GQA group size): query head `h` reads KV head `h / groupSize`.
    public var groupSize: Int { queryHeads / kvHeads }
    /// The attention logit scale, 1/√headDim.
    public var scale: Float { 1 / Float(headDim).squareRoot() }

    public init(layers: Int, queryHeads: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers
        self.queryHeads = queryHeads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }
}

/// Queries, keys and values of one layer for consecutive tokens, after RoPE.
public struct AttentionInput {
    /// `[tokens][queryHeads][headDim]`
    public let queries: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let keys: UnsafePointer<Float>
    /// `[tokens][kvHeads][headDim]`
    public let values: UnsafePointer<Float>
    public let tokens: Int
    /// Absolute position of the first token (positions count every token ever processed).
    public let firstPosition: Int

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
    /// Bytes of cached keys, values and metadata read by the last decode step, all layers.
    public var bytesReadLastStep = 0

    public init() {}
}

/// A KV-cache method: how a sequence stores keys and values and which of them each attention reads.
///
/// The model calls these methods layer by layer and never knows which method runs. One instance serves
/// one sequence; its memory is released when it is deallocated.
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
}

/// Dense causal attention of a chunk over streams that already hold it (the shared prefill path).
///
/// `streams[h]` is KV head `h` of the layer; query `t` of the chunk sees the first
/// `visibleBefore + t + 1` slots.
public func causalAttention(_ input: AttentionInput, streams: [KVStream], visibleBefore: Int, shape: AttentionShape,
                            output: UnsafeMutablePointer<Float>) {
    let d = shape.headDim, heads = shape.queryHeads
    ThreadPool.parallelFor(input.tokens * heads) { units in
        for unit in units {
            let t = unit / heads, h = unit % heads
            Attention.dense(query: input.queries + (t * heads + h) * d, stream: streams[h / shape.groupSize],
                            count: visibleBefore + t + 1, scale: shape.scale, output: output + (t * heads + h) * d,
                            batched: input.tokens > 1)
        }
    }
}

extension KVStream {
    /// Appends the chunk's rows of KV head `head`.
    func append(_ input: AttentionInput, head: Int, kvHeads: Int) {
        let d = headDim
        for t in 0..<input.tokens {
            let offset = (t * kvHeads + head) * d
            append(key: input.keys + offset, value: input.values + offset, position: input.firstPosition + t)
        }
    }
}
