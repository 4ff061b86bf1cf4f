import CKernels

/// The Llama architecture (Llama 2/3, Mistral, SmolLM, ...): the weights and the whole forward pass in one place.
///
/// Per layer: RMSNorm → Q, K, V projections → RoPE (adjacent pairs; Llama 3's per-dimension frequency
/// factors from `rope_freqs.weight` when the file has them) → attention through the `KVPolicy` → output
/// projection → residual; RMSNorm → SwiGLU feed-forward → residual. Weights stay in their quantized blocks in
/// the memory-mapped file.
// @unchecked: every property is a `let`; the pointers are into the read-only mapping of `file`, which it keeps alive.
public final class LlamaModel: LanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    public let file: GGUFFile

    struct Layer {
        let attentionNorm: UnsafePointer<Float>
        let attention: AttentionWeights
        let feedForwardNorm: UnsafePointer<Float>
        let feedForward: FeedForwardWeights
    }

    let tokenEmbedding: WeightMatrix
    let layers: [Layer]
    let outputNorm: UnsafePointer<Float>
    /// The unembedding; the token embedding itself when the model ties them.
    let output: WeightMatrix
    /// Llama 3 `rope_scaling` "llama3": each RoPE angle is divided by its factor.
    let ropeFrequencyFactors: UnsafePointer<Float>?

    public convenience init(file: GGUFFile) throws { try self.init(file: file, config: try ModelConfig(file: file)) }

    init(file: GGUFFile, config c: ModelConfig) throws {
        guard c.architecture == "llama" else { throw GGUFError("LlamaModel cannot run architecture '\(c.architecture)'") }
        config = c
        self.file = file
        let dim = c.embeddingLength
        var read = TensorReader(file: file)
        tokenEmbedding = try read.matrix("token_embd.weight", rows: c.vocabularySize, columns: dim)
        layers = try (0..<c.layers).map { i in
            Layer(attentionNorm: try read.vector("blk.\(i).attn_norm.weight", count: dim),
                  attention: try read.attention(layer: i, config: c),
                  feedForwardNorm: try read.vector("blk.\(i).ffn_norm.weight", count: dim),
                  feedForward: try read.feedForward(layer: i, config: c))
        }
        outputNorm = try read.vector("output_norm.weight", count: dim)
        output = try read.output(embedding: tokenEmbedding, config: c)
        ropeFrequencyFactors = try read.optionalVector("rope_freqs.weight", count: c.ropeDims / 2)
        try read.checkAllUsed(architecture: c.architecture)
    }

    public var weightBytesPerToken: Int {
        weightBytes(perLayer: layers.map { $0.attention.matrices + $0.feedForward.matrices },
                    output: output, embedding: tokenEmbedding)
    }

    public func forward(_ batch: ForwardBatch, state: ForwardState) -> UnsafeBufferPointer<Float> {
        let n = batch.count
        let c = config
        let dim = c.embeddingLength, hd = c.headDim, qDim = c.queryHeads * hd, kvDim = c.kvHeads * hd
        state.reserve(tokens: n, config: c)
        let x = state.x, xb = state.xb, v = state.v
        nonisolated(unsafe) let q = state.q, k = state.k   // each token's rows rotated by one thread

        ForwardSteps.embed(batch.tokens, embedding: tokenEmbedding, config: c, scale: nil, into: x)

        for (l, layer) in layers.enumerated() {
            // Attention block.
            ForwardSteps.normalize(x, rows: n, weight: layer.attentionNorm, config: c, into: xb)
            matmul([layer.attention.query, layer.attention.key, layer.attention.value], input: xb, tokens: n, outputs: [q, k, v], scratch: state.scratch)
            let positions = batch.positions
            ForwardSteps.tokenRanges(n) { rows in
                for t in rows {
                    Ops.rope(q + t * qDim, heads: c.queryHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: c.ropeBase,
                             frequencyScale: c.ropeFrequencyScale, frequencyFactors: ropeFrequencyFactors)
                    Ops.rope(k + t * kvDim, heads: c.kvHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: c.ropeBase,
                             frequencyScale: c.ropeFrequencyScale, frequencyFactors: ropeFrequencyFactors)
                }
            }
            ForwardSteps.attend(layer: l, batch: batch, config: c, state: state)
            matmul(layer.attention.output, input: state.attention, tokens: n, output: xb, scratch: state.scratch)
            Ops.add(x, xb, count: n * dim)

            // Feed-forward block (SwiGLU).
            ForwardSteps.normalize(x, rows: n, weight: layer.feedForwardNorm, config: c, into: xb)
            ForwardSteps.gatedFeedForward(layer.feedForward, gelu: false, tokens: n, config: c, state: state)
            Ops.add(x, xb, count: n * dim)
        }
        return ForwardSteps.logits(x, batch: batch, norm: outputNorm, output: output, config: c, state: state)
    }
}
