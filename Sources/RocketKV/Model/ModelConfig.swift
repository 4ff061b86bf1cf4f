/// Hyper-parameters of a model, read from GGUF metadata (`<architecture>.*` keys).
public struct ModelConfig: Sendable, Equatable {
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
    public let rmsEpsilon: Float

    /// Architectures the engine runs.
    public static let supportedArchitectures = ["llama"]

    public init(file: GGUFFile) throws {
        let arch = try file.string("general.architecture")
        guard Self.supportedArchitectures.contains(arch) else {
            throw GGUFError("unsupported model architecture '\(arch)' (supported: \(Self.supportedArchitectures.joined(separator: ", ")))")
        }
        architecture = arch
        name = file.metadata["general.name"]?.stringValue ?? "unnamed"
        layers = try file.int("\(arch).block_count")
        embeddingLength = try file.int("\(arch).embedding_length")
        feedForwardLength = try file.int("\(arch).feed_forward_length")
        queryHeads = try file.int("\(arch).attention.head_count")
        kvHeads = file.metadata["\(arch).attention.head_count_kv"]?.intValue ?? queryHeads
        headDim = file.metadata["\(arch).attention.key_length"]?.intValue ?? embeddingLength / max(1, queryHeads)
        contextLength = try file.int("\(arch).context_length")
        ropeBase = Float(file.metadata["\(arch).rope.freq_base"]?.doubleValue ?? 10_000)
        ropeDims = file.metadata["\(arch).rope.dimension_count"]?.intValue ?? headDim
        rmsEpsilon = Float(try file.double("\(arch).attention.layer_norm_rms_epsilon"))
        if let size = file.metadata["\(arch).vocab_size"]?.intValue {
            vocabularySize = size
        } else {
            vocabularySize = try file.array("tokenizer.ggml.tokens").count
        }

        guard layers > 0, queryHeads > 0, kvHeads > 0, queryHeads % kvHeads == 0, headDim > 0, headDim % 2 == 0,
              ropeDims <= headDim, ropeDims % 2 == 0, embeddingLength > 0, feedForwardLength > 0, contextLength > 0 else {
            throw GGUFError("inconsistent model hyper-parameters: \(layers) layers, \(queryHeads)/\(kvHeads) heads, head dim \(headDim)")
        }
    }

    public var attentionShape: AttentionShape {
        AttentionShape(layers: layers, queryHeads: queryHeads, kvHeads: kvHeads, headDim: headDim)
    }

    /// How each layer attends, for the KV seam (every layer of a Llama model attends globally).
    public var layerAttention: [LayerAttention] { attentionShape.layerAttention }
}
