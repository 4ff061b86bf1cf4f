import CKernels

/// The Qwen 2/2.5 (`qwen2`) and Qwen 3 (`qwen3`) architectures: the weights and the whole forward pass.
///
/// Llama's block with three differences, each as llama.cpp applies it: Qwen 2 adds learned biases to Q, K and V
/// after their projections; Qwen 3 has no biases but RMS-normalises each query and key head (`attn_q_norm`,
/// `attn_k_norm`) before RoPE; both rotate dimension `i` with `i + d/2` (NeoX RoPE).
// @unchecked: every property is a `let`; the pointers are into the read-only mapping of `file`, which it keeps alive.
public final class QwenModel: LanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    public let file: GGUFFile

    struct Layer {
        let attentionNorm: UnsafePointer<Float>
        let attention: AttentionWeights
        /// Qwen 2's projection biases.
        let queryBias, keyBias, valueBias: UnsafePointer<Float>?
        /// Qwen 3's per-head norms (`headDim` weights each).
        let queryNorm, keyNorm: UnsafePointer<Float>?
        let feedForwardNorm: UnsafePointer<Float>
        let feedForward: FeedForwardWeights
    }

    let tokenEmbedding: WeightMatrix
    let layers: [Layer]
    let outputNorm: UnsafePointer<Float>
    let output: WeightMatrix

    init(file: GGUFFile, config c: ModelConfig) throws {
        guard c.architecture == "qwen2" || c.architecture == "qwen3" else {
            throw GGUFError("QwenModel cannot run architecture '\(c.architecture)'")
        }
        config = c
        self.file = file
        let dim = c.embeddingLength, kvDim = c.kvHeads * c.headDim, qDim = c.queryHeads * c.headDim, qwen3 = c.architecture == "qwen3"
        var read = TensorReader(file: file)
        tokenEmbedding = try read.matrix("token_embd.weight", rows: c.vocabularySize, columns: dim)
        layers = try (0..<c.layers).map { i in
            Layer(attentionNorm: try read.vector("blk.\(i).attn_norm.weight", count: dim),
                  attention: try read.attention(layer: i, config: c),
                  queryBias: try read.optionalVector("blk.\(i).attn_q.bias", count: qDim),
                  keyBias: try read.optionalVector("blk.\(i).attn_k.bias", count: kvDim),
                  valueBias: try read.optionalVector("blk.\(i).attn_v.bias", count: kvDim),
                  queryNorm: qwen3 ? try read.vector("blk.\(i).attn_q_norm.weight", count: c.headDim) : nil,
                  keyNorm: qwen3 ? try read.vector("blk.\(i).attn_k_norm.weight", count: c.headDim) : nil,
                  feedForwardNorm: try read.vector("blk.\(i).ffn_norm.weight", count: dim),
                  feedForward: try read.feedForward(layer: i, config: c))
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
        let x = state.x, xb = state.xb
        nonisolated(unsafe) let q = state.q, k = state.k, v = state.v   // each token's rows finished by one thread

        ForwardSteps.embed(batch.tokens, embedding: tokenEmbedding, config: c, scale: nil, into: x)

        for (l, layer) in layers.enumerated() {
            // Attention block.
            ForwardSteps.normalize(x, rows: n, weight: layer.attentionNorm, config: c, into: xb)
            matmul([layer.attention.query, layer.attention.key, layer.attention.value], input: xb, tokens: n, outputs: [q, k, v], scratch: state.scratch)
            let positions = batch.positions
            nonisolated(unsafe) let layer = layer   // read-only weights
            ForwardSteps.tokenRanges(n) { rows in
                for t in rows {
                    let qt = q + t * qDim, kt = k + t * kvDim, vt = v + t * kvDim
                    if let b = layer.queryBias { Ops.add(qt, b, count: qDim) }
                    if let b = layer.keyBias { Ops.add(kt, b, count: kvDim) }
                    if let b = layer.valueBias { Ops.add(vt, b, count: kvDim) }
                }
                let qs = q + rows.lowerBound * qDim, ks = k + rows.lowerBound * kvDim   // every head a row of hd
                if let w = layer.queryNorm { Ops.rmsNormRows(qs, rows: rows.count * c.queryHeads, weight: w, epsilon: c.rmsEpsilon, count: hd, output: qs) }
                if let w = layer.keyNorm { Ops.rmsNormRows(ks, rows: rows.count * c.kvHeads, weight: w, epsilon: c.rmsEpsilon, count: hd, output: ks) }
                for t in rows {
                    Ops.rope(q + t * qDim, heads: c.queryHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: c.ropeBase,
                             style: .neox, frequencyScale: c.ropeFrequencyScale)
                    Ops.rope(k + t * kvDim, heads: c.kvHeads, headDim: hd, ropeDims: c.ropeDims, position: positions[t], base: c.ropeBase,
                             style: .neox, frequencyScale: c.ropeFrequencyScale)
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
