import CKernels
import Foundation

/// Which positions of a forward pass need logits.
public enum Logits: Sendable { case last, all, none }

/// A decoder-only transformer the engine runs: one type per architecture, each holding its weights and its
/// whole forward pass in one file. Sessions, generation, evaluation, the bench and the CLI use only this.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    var file: GGUFFile { get }
    /// Bytes of weights read for one decoded token.
    var weightBytesPerToken: Int { get }

    /// Runs the rows of `batch` through the model, each segment's attention through its own policy.
    ///
    /// Returns the logits (`[batch.logitRows.count][vocabularySize]`) in a buffer of `state`, valid until its next use.
    func forward(_ batch: ForwardBatch, state: ForwardState) -> UnsafeBufferPointer<Float>
}

extension LanguageModel {
    /// Runs `tokens` (absolute positions from `position`) through the model, with attention through `policy`.
    ///
    /// `decode` selects the policy's decode path (one token) instead of prefill. Returns the logits
    /// (`[rows][vocabularySize]`, rows as requested) in a buffer of `state`, valid until its next use.
    public func forward(_ tokens: [Int], from position: Int, policy: KVPolicy, decode: Bool, logits: Logits,
                        state: ForwardState) -> UnsafeBufferPointer<Float> {
        forward(ForwardBatch([.init(tokens: tokens, position: position, policy: policy, decode: decode, logits: logits)]), state: state)
    }

    public func forward(_ tokens: [Int], from position: Int, policy: KVPolicy, logits: Logits = .last,
                        state: ForwardState) -> UnsafeBufferPointer<Float> {
        forward(tokens, from: position, policy: policy, decode: false, logits: logits, state: state)
    }
}

/// Loads the model of a GGUF file with the architecture its metadata names.
public func loadModel(file: GGUFFile) throws -> LanguageModel {
    let config = try ModelConfig(file: file)
    switch config.architecture {
    case "llama": return try LlamaModel(file: file, config: config)
    case "qwen2", "qwen3": return try QwenModel(file: file, config: config)
    case "gemma3": return try Gemma3Model(file: file, config: config)
    default: throw GGUFError("unsupported model architecture '\(config.architecture)'")
    }
}

/// Reads an architecture's tensors from a GGUF file, checking each one's type and shape, and remembers which
/// it used (a file with tensors no architecture reads is reported, not silently half-used).
struct TensorReader {
    let file: GGUFFile
    private(set) var used: Set<String> = []

    init(file: GGUFFile) { self.file = file }

    mutating func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
        guard let t = file.tensor(named: name) else { throw GGUFError("missing tensor '\(name)'") }
        guard t.shape.count == 2, t.shape[0] == columns, t.shape[1] == rows else {
            throw GGUFError("tensor '\(name)' has shape \(t.shape), expected [\(columns), \(rows)]")
        }
        used.insert(name)
        return WeightMatrix(type: t.type, rows: rows, columns: columns, data: file.data(of: t))
    }

    mutating func vector(_ name: String, count: Int) throws -> UnsafePointer<Float> {
        guard let t = file.tensor(named: name) else { throw GGUFError("missing tensor '\(name)'") }
        guard t.type == .f32, t.elementCount == count else {
            throw GGUFError("tensor '\(name)' must be F32 with \(count) elements (has \(t.type.name), \(t.elementCount))")
        }
        used.insert(name)
        return file.data(of: t).assumingMemoryBound(to: Float.self)
    }

    /// A vector that only some files of the architecture have (biases, RoPE frequency factors).
    mutating func optionalVector(_ name: String, count: Int) throws -> UnsafePointer<Float>? {
        file.tensor(named: name) == nil ? nil : try vector(name, count: count)
    }

    /// The unembedding: `output.weight`, or the token embedding when the model ties them.
    mutating func output(embedding: WeightMatrix, config c: ModelConfig) throws -> WeightMatrix {
        file.tensor(named: "output.weight") == nil ? embedding : try matrix("output.weight", rows: c.vocabularySize, columns: c.embeddingLength)
    }

    /// Throws unless every tensor of the file was read.
    func checkAllUsed(architecture: String) throws {
        let unused = file.tensors.map(\.name).filter { !used.contains($0) }
        guard unused.isEmpty else {
            throw GGUFError("the file has \(unused.count) tensor(s) the \(architecture) architecture does not use (e.g. '\(unused.sorted()[0])')")
        }
    }
}

/// The projections of every architecture's attention block.
struct AttentionWeights {
    let query, key, value, output: WeightMatrix
    var matrices: [WeightMatrix] { [query, key, value, output] }
}

/// The matrices of a gated feed-forward block.
struct FeedForwardWeights {
    let gate, up, down: WeightMatrix
    var matrices: [WeightMatrix] { [gate, up, down] }
}

extension TensorReader {
    /// Layer `i`'s Q, K, V and output projections, shapes from the config.
    mutating func attention(layer i: Int, config c: ModelConfig) throws -> AttentionWeights {
        let dim = c.embeddingLength, kvDim = c.kvHeads * c.headDim, qDim = c.queryHeads * c.headDim
        return AttentionWeights(query: try matrix("blk.\(i).attn_q.weight", rows: qDim, columns: dim),
                                key: try matrix("blk.\(i).attn_k.weight", rows: kvDim, columns: dim),
                                value: try matrix("blk.\(i).attn_v.weight", rows: kvDim, columns: dim),
                                output: try matrix("blk.\(i).attn_output.weight", rows: dim, columns: qDim))
    }

    /// Layer `i`'s gate, up and down matrices.
    mutating func feedForward(layer i: Int, config c: ModelConfig) throws -> FeedForwardWeights {
        let dim = c.embeddingLength, ff = c.feedForwardLength
        return FeedForwardWeights(gate: try matrix("blk.\(i).ffn_gate.weight", rows: ff, columns: dim),
                                  up: try matrix("blk.\(i).ffn_up.weight", rows: ff, columns: dim),
                                  down: try matrix("blk.\(i).ffn_down.weight", rows: dim, columns: ff))
    }
}

/// Weights read per decoded token by matrices applied once per token, plus one embedding row.
func weightBytes(perLayer: [[WeightMatrix]], output: WeightMatrix, embedding: WeightMatrix) -> Int {
    perLayer.reduce(0) { total, layer in total + layer.reduce(0) { $0 + $1.rows * $1.rowBytes } } + output.rows * output.rowBytes + embedding.rowBytes
}

/// Activation buffers of a forward pass, allocated once for the largest chunk and reused.
public final class ForwardState {
    private(set) var capacity = 0
    private(set) var logitsCapacity = 0
    var x, xb, q, k, v, attention, hb, hb2: UnsafeMutablePointer<Float>
    private(set) var logits: UnsafeMutablePointer<Float>
    let scratch = MatmulScratch()

    public init() {
        func placeholder() -> UnsafeMutablePointer<Float> { .allocate(capacity: 1) }
        (x, xb, q, k, v) = (placeholder(), placeholder(), placeholder(), placeholder(), placeholder())
        (attention, hb, hb2, logits) = (placeholder(), placeholder(), placeholder(), placeholder())
    }

    deinit {
        for p in [x, xb, q, k, v, attention, hb, hb2, logits] { p.deallocate() }
    }

    func reserve(tokens n: Int, config c: ModelConfig) {
        guard n > capacity else { return }
        for p in [x, xb, q, k, v, attention, hb, hb2] { p.deallocate() }
        let dim = c.embeddingLength, qDim = c.queryHeads * c.headDim, kvDim = c.kvHeads * c.headDim
        x = .allocate(capacity: n * dim)
        xb = .allocate(capacity: n * max(dim, qDim))
        q = .allocate(capacity: n * qDim)
        k = .allocate(capacity: n * kvDim)
        v = .allocate(capacity: n * kvDim)
        attention = .allocate(capacity: n * qDim)
        hb = .allocate(capacity: n * c.feedForwardLength)
        hb2 = .allocate(capacity: n * c.feedForwardLength)
        capacity = n
    }

    func reserveLogits(rows: Int, vocabulary: Int) {
        guard rows * vocabulary > logitsCapacity else { return }
        logits.deallocate()
        logits = .allocate(capacity: rows * vocabulary)
        logitsCapacity = rows * vocabulary
    }
}

/// The steps the architectures share: embedding, norms over token rows, attention through the policy, the
/// gated feed-forward, and the final norm and unembedding.
enum ForwardSteps {
    /// `body(rows)` over token rows `0..<n` split into ranges, rows independent of each other: one range per
    /// pool thread for a prompt chunk, all of them inline for a few rows (a fork-join would cost more than their work).
    static func tokenRanges(_ n: Int, _ body: @Sendable (_ rows: Range<Int>) -> Void) {
        if n < 8 { body(0..<n) } else { ThreadPool.parallelFor(n, body) }
    }

    /// RMSNorm of each of the `n` token rows of `x` into `output` (they may be the same buffer).
    static func normalize(_ x: UnsafePointer<Float>, rows n: Int, weight: UnsafePointer<Float>, config c: ModelConfig,
                          into output: UnsafeMutablePointer<Float>) {
        let dim = c.embeddingLength, epsilon = c.rmsEpsilon
        nonisolated(unsafe) let x = x, weight = weight, output = output   // each row read and written by one thread
        tokenRanges(n) { rows in
            Ops.rmsNormRows(x + rows.lowerBound * dim, rows: rows.count, weight: weight, epsilon: epsilon, count: dim, output: output + rows.lowerBound * dim)
        }
    }

    /// Layer `l`'s attention of `state.q/k/v` (after RoPE) into `state.attention`, each segment of `batch`
    /// through its own policy.
    ///
    /// Decode rows of several sequences (a server step) are one pool job whose threads claim whole sequences:
    /// a sequence's attention is too small to split well, and splitting each would cost a few fork-joins per
    /// sequence and layer. The policies' own jobs then run on the claiming thread (the pool is busy), which
    /// gives the same bits. Prompt chunks, and a lone decode row, use the whole pool as before.
    static func attend(layer l: Int, batch: ForwardBatch, config c: ModelConfig, state: ForwardState) {
        let qDim = c.queryHeads * c.headDim, kvDim = c.kvHeads * c.headDim
        let firstRows = batch.firstRows
        // Read only; each policy is used by the one thread that claimed its segment.
        nonisolated(unsafe) let segments = batch.segments
        nonisolated(unsafe) let q = state.q, k = state.k, v = state.v, attention = state.attention   // each segment its own rows
        @Sendable func attend(_ i: Int) {
            let segment = segments[i], row = firstRows[i]
            let input = AttentionInput(queries: q + row * qDim, keys: k + row * kvDim, values: v + row * kvDim,
                                       tokens: segment.tokens.count, firstPosition: segment.position)
            if segment.decode { segment.policy.decode(layer: l, input, output: attention + row * qDim) } else { segment.policy.prefill(layer: l, input, output: attention + row * qDim) }
        }
        StepProfile.measure(.attention) {
            let decodes = segments.indices.filter { segments[$0].decode }
            if decodes.count > 1 {
                ThreadPool.runPhases(groups: decodes.count, phases: [1]) { i, _, _ in attend(decodes[i]) }
            } else {
                decodes.forEach(attend)
            }
            for i in segments.indices where !segments[i].decode { attend(i) }
        }
    }

    /// The gated feed-forward of `state.xb` (`[n][embeddingLength]`) back into `state.xb`:
    /// `down · (activation(gate · x) ⊙ (up · x))`, with SiLU (SwiGLU) or ggml's tabulated GELU (GEGLU).
    static func gatedFeedForward(_ w: FeedForwardWeights, gelu: Bool, tokens n: Int, config c: ModelConfig, state: ForwardState) {
        matmul([w.gate, w.up], input: state.xb, tokens: n, outputs: [state.hb, state.hb2], scratch: state.scratch)
        let ff = c.feedForwardLength
        nonisolated(unsafe) let gate = state.hb, up = state.hb2   // each row read and written by one thread
        tokenRanges(n) { rows in
            let first = rows.lowerBound * ff, count = Int32(rows.count * ff)
            if gelu { rk_geglu(gate + first, up + first, count) } else { rk_swiglu(gate + first, up + first, count) }
        }
        matmul(w.down, input: state.hb, tokens: n, output: state.xb, scratch: state.scratch)
    }

    /// Token embedding rows into `x` (`[tokens][embeddingLength]`), each multiplied by `scale` when given.
    static func embed(_ tokens: [Int], embedding: WeightMatrix, config c: ModelConfig, scale: Float?, into x: UnsafeMutablePointer<Float>) {
        let dim = c.embeddingLength
        for (t, token) in tokens.enumerated() {
            precondition(token >= 0 && token < c.vocabularySize, "token id \(token) out of range")
            dequantize(embedding.type, from: embedding.data + token * embedding.rowBytes, count: dim, into: x + t * dim)
            if let scale { Ops.scale(x + t * dim, by: scale, count: dim) }
        }
    }

    /// Final RMSNorm and unembedding of the rows of `x` that `batch` asks logits for, optionally soft-capped.
    static func logits(_ x: UnsafeMutablePointer<Float>, batch: ForwardBatch, norm: UnsafePointer<Float>, output: WeightMatrix,
                       config c: ModelConfig, state: ForwardState) -> UnsafeBufferPointer<Float> {
        let dim = c.embeddingLength, rows = batch.logitRows.count
        guard rows > 0 else { return UnsafeBufferPointer(start: state.logits, count: 0) }
        state.reserveLogits(rows: rows, vocabulary: c.vocabularySize)
        for (t, row) in batch.logitRows.enumerated() { Ops.rmsNorm(x + row * dim, weight: norm, epsilon: c.rmsEpsilon, count: dim, output: state.xb + t * dim) }
        matmul(output, input: state.xb, tokens: rows, output: state.logits, scratch: state.scratch)
        if let cap = c.finalLogitSoftcap {
            for i in 0..<(rows * c.vocabularySize) { state.logits[i] = tanhf(state.logits[i] * (1 / cap)) * cap }
        }
        return UnsafeBufferPointer(start: state.logits, count: rows * c.vocabularySize)
    }
}
