import CKernels

/// A 2-D weight tensor in its stored (possibly quantized) format: `rows` rows of `columns` elements.
// @unchecked: `data` points into a model's read-only mapping (or a test's buffer), never written through.
public struct WeightMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    public let data: UnsafeRawPointer
    public var rowBytes: Int { type.byteCount(elements: columns) }

    public init(type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer) {
        self.type = type
        self.rows = rows
        self.columns = columns
        self.data = data
    }

    /// Types with integer (Q8 activation) kernels; other supported types take the dequantize-and-dot path.
    public static let integerKernelTypes: Set<GGMLType> = [.q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q5_K, .q6_K]

    /// Whether llama.cpp (x86 AVX2 build) would hold this matrix in its CPU_REPACK buffer and multiply it with its
    /// interleaved kernels: ggml_repack_get_optimal_repack_type takes Q4_K (and Q4_0, IQ4_NL, MXFP4) with a row
    /// count divisible by 8; Q5_0, Q8_0, Q5_K and Q6_K are not repacked on x86. Of those, RocketKV reproduces Q4_K's
    /// order (`rk_matmul_q4_K_repacked`); Q4_0 is computed as llama.cpp's non-repacked path.
    var llamaRepacked: Bool { type == .q4_K && rows % 8 == 0 }

    /// The block format activations are quantized to before the integer dot product (as llama.cpp's `vec_dot_type`).
    var activationType: GGMLType? {
        switch type {
        case .q4_0, .q5_0, .q8_0: return .q8_0
        case .q4_1: return .q8_1
        case .q4_K, .q5_K, .q6_K: return .q8_K
        default: return nil
        }
    }
}

/// Scratch memory for quantized activations, grown on demand and reused across calls.
public final class MatmulScratch {
    private(set) var buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    private var capacity = 64

    public init() {}
    deinit { buffer.deallocate() }

    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity {
            buffer.deallocate()
            capacity = bytes
            buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        }
        return buffer
    }
}

/// `output[t][r] = Σ_c weight[r][c] · input[t][c]` for `tokens` input rows, split across the thread pool.
///
/// Quantized weights take llama.cpp's path: activations are quantized to Q8_0/Q8_1 per 32-block (Q8_K per
/// 256-block for the K-quants) and the dot products run on integers. `output` rows have stride `outputStride` (≥ `weight.rows`).
public func matmul(_ weight: WeightMatrix, input: UnsafePointer<Float>, tokens: Int,
                   output: UnsafeMutablePointer<Float>, outputStride: Int? = nil, scratch: MatmulScratch) {
    matmul([weight], input: input, tokens: tokens, outputs: [output], outputStrides: [outputStride ?? weight.rows], scratch: scratch)
}

/// Several matrices applied to the same input (Q, K, V; gate and up): the activations are quantized once
/// and all rows are split across the pool in one job (a decode step issues a few jobs per layer, not a dozen).
public func matmul(_ weights: [WeightMatrix], input: UnsafePointer<Float>, tokens: Int,
                   outputs: [UnsafeMutablePointer<Float>], outputStrides: [Int]? = nil, scratch: MatmulScratch) {
    StepProfile.measure(.matmul) { matmulUnmeasured(weights, input: input, tokens: tokens, outputs: outputs, outputStrides: outputStrides, scratch: scratch) }
}

private func matmulUnmeasured(_ weights: [WeightMatrix], input: UnsafePointer<Float>, tokens: Int,
                              outputs: [UnsafeMutablePointer<Float>], outputStrides: [Int]?, scratch: MatmulScratch) {
    let n = weights[0].columns
    let strides = outputStrides ?? weights.map(\.rows)
    // The pool's tasks read `input` and write disjoint parts of the outputs (the entries of their weight rows).
    nonisolated(unsafe) let input = input, outputs = outputs
    // Rows per work unit: keeps each thread's share of the rows contiguous and cache-line aligned in y.
    let granularity = 16
    let shared = weights.allSatisfy {
        $0.columns == n && $0.activationType != nil && $0.activationType == weights[0].activationType
            && $0.llamaRepacked == weights[0].llamaRepacked
    }
    if shared, let activationType = weights[0].activationType {
        let xstride = activationType.byteCount(elements: n)
        nonisolated(unsafe) let quantized = scratch.reserve(xstride * tokens)   // a row per token, each written by one task
        // llama.cpp's repacked path: the first tokens − tokens % 4 rows go through ggml_gemm (quantized 4 at a time by
        // ggml_quantize_mat_q8_K_4x8), the rest through ggml_gemv (quantize_row_q8_K). Every thread sees all tokens.
        let repacked = weights[0].llamaRepacked, gemmTokens = repacked ? tokens - tokens % 4 : 0
        let quantize = { @Sendable (range: Range<Int>) in
            for t in range {
                let x = input + t * n, y = quantized + t * xstride
                switch activationType {
                case .q8_1: rk_quantize_row_q8_1(x, y, Int32(n))
                case .q8_K where t < gemmTokens: rk_quantize_row_q8_K_x4(x, y, Int32(n))
                case .q8_K: rk_quantize_row_q8_K(x, y, Int32(n))
                default: rk_quantize_row_q8_0(x, y, Int32(n))
                }
            }
        }
        if tokens < 8 { quantize(0..<tokens) } else { ThreadPool.parallelFor(tokens, quantize) }
        // Each matrix's rows rounded up to the granularity, laid end to end.
        var starts: [Int] = [], total = 0
        for w in weights { starts.append(total); total += (w.rows + granularity - 1) / granularity * granularity }
        ThreadPool.parallelFor(total, granularity: granularity) { [starts] range in
            for (i, w) in weights.enumerated() {
                let lo = max(range.lowerBound - starts[i], 0), hi = min(range.upperBound - starts[i], w.rows)
                if lo < hi && w.llamaRepacked {
                    rk_matmul_q4_K_repacked(w.data, w.rowBytes, Int32(lo), Int32(hi), quantized, xstride, Int32(tokens),
                                            Int32(gemmTokens), outputs[i], strides[i], Int32(n))
                } else if lo < hi {
                    rk_matmul_quant(Int32(w.type.rawValue), w.data, w.rowBytes, Int32(lo), Int32(hi),
                                    quantized, xstride, Int32(tokens), outputs[i], strides[i], Int32(n))
                }
            }
        }
        return
    }
    for (i, weight) in weights.enumerated() {
        nonisolated(unsafe) let output = outputs[i]
        let ystride = strides[i], n = weight.columns
        if weight.activationType != nil {
            matmul([weight], input: input, tokens: tokens, outputs: [output], outputStrides: [ystride], scratch: scratch)
        } else if weight.type == .f32 || weight.type == .f16 {
            ThreadPool.parallelFor(weight.rows, granularity: granularity) { rows in
                rk_matmul_float(Int32(weight.type.rawValue), weight.data, weight.rowBytes, Int32(rows.lowerBound), Int32(rows.upperBound),
                                input, n, Int32(tokens), output, ystride, Int32(n))
            }
        } else {
            // Generic path for the other block formats: dequantize each row once, then f32 dot products.
            ThreadPool.parallelFor(weight.rows, granularity: granularity) { rows in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { row in
                    for r in rows {
                        dequantize(weight.type, from: weight.data + r * weight.rowBytes, count: n, into: row.baseAddress!)
                        for t in 0..<tokens { output[t * ystride + r] = rk_dot_f32(row.baseAddress!, input + t * n, Int32(n)) }
                    }
                }
            }
        }
    }
}
