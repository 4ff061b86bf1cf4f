import CKernels

/// Hyper-parameters of a model, read from GGUF metadata (`<architecture>.*` keys), with what llama.cpp
/// assumes when a key is absent.
public struct ModelConfig: Sendable, Equatable {
    /// How RoPE pairs a head's dimensions: adjacent pairs (`normal`, Llama) or halves (`neox`, Qwen, Gemma).
    public enum RopeStyle: String, Sendable { case normal, neox }

    public let architecture: String
    public let name: String
    public let layers: Int
    public let embeddingLength: Int
    public let feedForwardLength: Int
    public let queryHeads: Int
    public let kvHeads: Int
    public let headDim: Int
    public let contextLength: Int
    public let vocabularySize: Int
    public let ropeBase: Float
    public let ropeDims: Int
    public let ropeStyle: RopeStyle
    /// Linear RoPE scaling: positions are multiplied by this (1 / `rope.scaling.factor`).
    public let ropeFrequencyScale: Float
    public let rmsEpsilon: Float
    /// Sliding-window layers: the window and RoPE base they use, and which layers they are.
    public let slidingWindow: Int?
    public let slidingRopeBase: Float
    public let slidingLayers: [Bool]
    /// The logit scale each layer's attention applies (llama.cpp's `kq_scale`); Gemma 3 scales the queries
    /// instead (`queryScale`) and attends with 1.
    public let attentionScale: Float
    public let queryScale: Float?
    /// Gemma: the embedding rows are multiplied by √embeddingLength.
    public let embeddingScale: Float?
    /// Gemma: `tanh(logit / c) · c` on the output logits.
    public let finalLogitSoftcap: Float?

    /// Architectures the engine runs.
    public static let supportedArchitectures = ["llama", "qwen2", "qwen3", "gemma3"]

    public init(file: GGUFFile) throws {
        let arch = try file.string("general.architecture")
        guard Self.supportedArchitectures.contains(arch) else {
            throw GGUFError("unsupported model architecture '\(arch)' (supported: \(Self.supportedArchitectures.joined(separator: ", ")))")
        }
        func optionalInt(_ key: String) throws -> Int? { file.metadata[key] == nil ? nil : try file.int(key) }
        func optionalFloat(_ key: String) throws -> Float? { file.metadata[key] == nil ? nil : Float(try file.double(key)) }
        architecture = arch
        name = file.metadata["general.name"]?.stringValue ?? "unnamed"
        layers = try Self.bounded(file.int("\(arch).block_count"), 1 << 12, "\(arch).block_count")
        embeddingLength = try Self.bounded(file.int("\(arch).embedding_length"), 1 << 20, "\(arch).embedding_length")
        feedForwardLength = try Self.bounded(file.int("\(arch).feed_forward_length"), 1 << 22, "\(arch).feed_forward_length")
        queryHeads = try Self.bounded(file.int("\(arch).attention.head_count"), 1 << 12, "\(arch).attention.head_count")
        kvHeads = try Self.bounded(optionalInt("\(arch).attention.head_count_kv") ?? queryHeads, queryHeads, "\(arch).attention.head_count_kv")
        headDim = try Self.bounded(optionalInt("\(arch).attention.key_length") ?? embeddingLength / queryHeads, Int(RK_MAX_HEAD_DIM), "\(arch).attention.key_length")
        contextLength = try Self.bounded(file.int("\(arch).context_length"), 1 << 28, "\(arch).context_length")
        ropeBase = try optionalFloat("\(arch).rope.freq_base") ?? 10_000
        ropeDims = try Self.bounded(optionalInt("\(arch).rope.dimension_count") ?? headDim, headDim, "\(arch).rope.dimension_count")
        ropeStyle = arch == "llama" ? .normal : .neox
        let scalingType = file.metadata["\(arch).rope.scaling.type"]?.stringValue
        let scalingFactor = try optionalFloat("\(arch).rope.scaling.factor")
        // llama.cpp: a factor of 0 (or none) means no scaling.
        ropeFrequencyScale = scalingType == "linear" && scalingFactor != 0 ? 1 / (scalingFactor ?? 1) : 1
        rmsEpsilon = Float(try file.double("\(arch).attention.layer_norm_rms_epsilon"))
        if let size = try optionalInt("\(arch).vocab_size") {
            vocabularySize = try Self.bounded(size, 1 << 24, "\(arch).vocab_size")
        } else {
            vocabularySize = try Self.bounded(file.array("tokenizer.ggml.tokens").count, 1 << 24, "tokenizer.ggml.tokens")
        }
        if arch == "gemma3" {
            // llama.cpp: every 6th layer is global, the others slide over `sliding_window` tokens with RoPE base 10,000;
            // queries are scaled by 1/√key_length before attending with scale 1.
            slidingWindow = try Self.bounded(file.int("gemma3.attention.sliding_window"), 1 << 28, "gemma3.attention.sliding_window")
            let pattern = try optionalInt("gemma3.attention.sliding_window_pattern") ?? 6
            guard (0...layers).contains(pattern) else {
                throw GGUFError("model hyper-parameter gemma3.attention.sliding_window_pattern = \(pattern) is out of range (0...\(layers))")
            }
            slidingLayers = (0..<layers).map { pattern == 0 || $0 % pattern < pattern - 1 }
            slidingRopeBase = 10_000
            queryScale = 1 / Float(headDim).squareRoot()
            attentionScale = 1
            embeddingScale = Float(embeddingLength).squareRoot()
            finalLogitSoftcap = try optionalFloat("gemma3.final_logit_softcapping")
        } else {
            slidingWindow = nil
            slidingLayers = Array(repeating: false, count: layers)
            slidingRopeBase = ropeBase
            queryScale = nil
            attentionScale = 1 / Float(headDim).squareRoot()
            embeddingScale = nil
            finalLogitSoftcap = nil
        }

        try checkRanges()
    }

    /// Throws unless every hyper-parameter is in range and they agree with each other (a GGUF file is untrusted).
    private func checkRanges() throws {
        guard queryHeads % kvHeads == 0 else {
            throw GGUFError("inconsistent model hyper-parameters: \(queryHeads) query heads are not a multiple of \(kvHeads) KV heads")
        }
        guard headDim % 2 == 0, ropeDims % 2 == 0 else {
            throw GGUFError("inconsistent model hyper-parameters: head dim \(headDim), RoPE dims \(ropeDims) (both must be even)")
        }
        guard ropeBase.isFinite, ropeBase > 0, slidingRopeBase.isFinite, slidingRopeBase > 0 else {
            throw GGUFError("inconsistent model hyper-parameters: RoPE base \(ropeBase) (must be finite and > 0)")
        }
        guard rmsEpsilon.isFinite, rmsEpsilon > 0, rmsEpsilon < 1 else {
            throw GGUFError("inconsistent model hyper-parameters: RMS epsilon \(rmsEpsilon) (must be in (0, 1))")
        }
        guard ropeFrequencyScale.isFinite, ropeFrequencyScale > 0 else {
            throw GGUFError("inconsistent model hyper-parameters: RoPE scaling factor \(1 / ropeFrequencyScale) (must be finite and > 0)")
        }
        if let cap = finalLogitSoftcap, !(cap.isFinite && cap > 0) {
            throw GGUFError("inconsistent model hyper-parameters: final logit softcap \(cap) (must be finite and > 0)")
        }
    }

    /// `value` if it is in `1...bound`: the bounds are far above any real model's and keep every size the engine
    /// derives (rows × columns, context × KV bytes per token, ...) inside an `Int`.
    private static func bounded(_ value: Int, _ bound: Int, _ key: String) throws -> Int {
        guard (1...bound).contains(value) else { throw GGUFError("model hyper-parameter \(key) = \(value) is out of range (1...\(bound))") }
        return value
    }

    /// Bytes of one token's keys and values over all layers in f16.
    public var kvBytesPerToken: Int { layers * kvHeads * headDim * 2 * 2 }

    /// The attention shape of every layer, when all layers are alike (the KV methods' unit tests use it).
    public var attentionShape: AttentionShape {
        AttentionShape(layers: layers, queryHeads: queryHeads, kvHeads: kvHeads, headDim: headDim, scale: attentionScale)
    }

    /// How each layer attends, for the KV seam.
    public var layerAttention: [LayerAttention] {
        slidingLayers.map { sliding in
            LayerAttention(kind: sliding ? .slidingWindow(slidingWindow ?? contextLength) : .global, queryHeads: queryHeads,
                           kvHeads: kvHeads, headDim: headDim, scale: attentionScale)
        }
    }

    /// The RoPE base of layer `l`.
    public func ropeBase(layer l: Int) -> Float { slidingLayers[l] ? slidingRopeBase : ropeBase }

    /// The linear RoPE scale of layer `l` (sliding layers are never scaled, as in llama.cpp).
    public func ropeFrequencyScale(layer l: Int) -> Float { slidingLayers[l] ? 1 : ropeFrequencyScale }
}
