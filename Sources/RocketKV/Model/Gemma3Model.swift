import CKernels

/// The Gemma 3 architecture (`gemma3`): the weights and the whole forward pass, as llama.cpp computes it.
///
/// Embedding rows scaled by √d_model. Per layer: RMSNorm → Q, K, V → per-head RMSNorm of Q and K → NeoX RoPE
/// (base 10,000 on sliding-window layers, the file's base on global ones) → Q scaled by 1/√head_dim →
/// attention with scale 1 through the `KVPolicy` (sliding-window layers see the last `sliding_window` tokens)
/// → output projection → RMSNorm → residual; RMSNorm → GELU-gated feed-forward → RMSNorm → residual. Every
/// sixth layer is global (`LayerAttention` tells the KV seam which). Norm weights are stored as 1 + w by the
/// converter, so they multiply as they are.
// @unchecked: every property is a `let`; the pointers are into the read-only mapping of `file`, which it keeps alive.
public final class Gemma3Model: LanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    public let file: GGUFFile

    struct Layer {
        let attentionNorm: UnsafePointer<Float>
        let attention: AttentionWeights
        let queryNorm, keyNorm: UnsafePointer<Float>
        let attentionPostNorm: UnsafePointer<Float>
        let feedForwardNorm: UnsafePointer<Float>
        let feedForward: FeedForwardWeights
        let feedForwardPostNorm: UnsafePointer<Float>
    }

    let tokenEmbedding: WeightMatrix
    let layers: [Layer]
    let outputNorm: UnsafePointer<Float>
    let output: WeightMatrix

    init(file: GGUFFile, config c: ModelConfig) throws {
        guard c.architecture == "gemma3" else { throw GGUFError("Gemma3Model cannot run architecture '\(c.architecture)'") }
        config = c
        self.file = file
        let dim = c.embeddingLength
        var read = TensorReader(file: file)
        tokenEmbedding = try read.matrix("token_embd.weight", rows: c.vocabularySize, columns: dim)
        layers = try (0..<c.layers).map { i in
            Layer(attentionNorm: try read.vector("blk.\(i).attn_norm.weight", count: dim),
                  attention: try read.attention(layer: i, config: c),
                  queryNorm: try read.vector("blk.\(i).attn_q_norm.weight", count: c.headDim),
                  keyNorm: try read.vector("blk.\(i).attn_k_norm.weight", count: c.headDim),
                  attentionPostNorm: try read.vector("blk.\(i).post_attention_norm.weight", count: dim),
                  feedForwardNorm: try read.vector("blk.\(i).ffn_norm.weight", count: dim),
                  feedForward: try read.feedForward(layer: i, config: c),
                  feedForwardPostNorm: try read.vector("blk.\(i).post_ffw_norm.weight", count: dim))
        }
        outputNorm = try read.vector("output_norm.weight", count: dim)
        output = try read.output(embedding: tokenEmbedding, config: c)
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

        ForwardSteps.embed(batch.tokens, embedding: tokenEmbedding, config: c, scale: c.embeddingScale, into: x)

        for (l, layer) in layers.enumerated() {
            // Attention block, normalised before and after.
            ForwardSteps.normalize(x, rows: n, weight: layer.attentionNorm, config: c, into: xb)
            matmul([layer.attention.query, layer.attention.key, layer.attention.value], input: xb, tokens: n, outputs: [q, k, v], scratch: state.scratch)
            let base = c.ropeBase(layer: l), frequencyScale = c.ropeFrequencyScale(layer: l), positions = batch.positions
            nonisolated(unsafe) let layer = layer   // read-only weights
            ForwardSteps.tokenRanges(n) { rows in
                let qs = q + rows.lowerBound * qDim, ks = k + rows.lowerBound * kvDim   // every head a row of hd
                Ops.rmsNormRows(qs, rows: rows.count * c.queryHeads, weight: layer.queryNorm, epsilon: c.rmsEpsilon, count: hd, output: qs)
                Ops.rmsNormRows(ks, rows: rows.count * c.kvHeads, weight: layer.keyNorm, epsilon: c.rmsEpsilon, count: hd, output: ks)
                for t in rows {
                    let qt = q + t * qDim, kt = k + t * kvDim
                    Ops.rope(qt, heads: c.queryHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: base,
                             style: .neox, frequencyScale: frequencyScale)
                    Ops.rope(kt, heads: c.kvHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: base,
                             style: .neox, frequencyScale: frequencyScale)
                    if let s = c.queryScale { Ops.scale(qt, by: s, count: qDim) }
                }
            }
            ForwardSteps.attend(layer: l, batch: batch, config: c, state: state)
            matmul(layer.attention.output, input: state.attention, tokens: n, output: xb, scratch: state.scratch)
            ForwardSteps.normalize(xb, rows: n, weight: layer.attentionPostNorm, config: c, into: xb)
            Ops.add(x, xb, count: n * dim)

            // Feed-forward block (GELU-gated), normalised before and after.
            ForwardSteps.normalize(x, rows: n, weight: layer.feedForwardNorm, config: c, into: xb)
            ForwardSteps.gatedFeedForward(layer.feedForward, gelu: true, tokens: n, config: c, state: state)
            ForwardSteps.normalize(xb, rows: n, weight: layer.feedForwardPostNorm, config: c, into: xb)
            Ops.add(x, xb, count: n * dim)
        }
        return ForwardSteps.logits(x, batch: batch, norm: outputNorm, output: output, config: c, state: state)
    }
}
