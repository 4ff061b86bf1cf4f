import Foundation
import CKernels

/// Exact attention of one query head over cached f16 rows, in llama.cpp's arithmetic.
///
/// As llama.cpp does with an f16 cache, the query is rounded to f16 before the products with K, and the
/// probabilities are rounded to f16 before the products with V. `batched` selects the summation order
/// llama.cpp uses when several tokens are processed at once (prefill) rather than one (decode).
public enum Attention {
    /// `output = softmax(q·Kᵀ·scale)·V` over the first `count` slots of `stream`.
    public static func dense(query: UnsafePointer<Float>, stream: KVStream, count: Int, scale: Float,
                             output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        attend(query: query, stream: stream, slots: nil, count: count, scale: scale, output: output, batched: batched)
    }

    /// The same over a chosen subset of slots. Selecting slots `0..<count` in order gives `dense`'s result bit for bit.
    public static func sparse(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafeBufferPointer<Int32>,
                              scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        attend(query: query, stream: stream, slots: slots.baseAddress, count: slots.count, scale: scale, output: output, batched: batched)
    }

    /// `sparse` for the `heads` query heads of one KV group sharing the same slots (`queries`/`output`:
    /// `[heads][headDim]`): the selected rows are gathered once and every key and value is converted once
    /// for the whole group. Bit-identical to `sparse` per head.
    public static func sparseGroup(queries: UnsafePointer<Float>, heads: Int, stream: KVStream, slots: UnsafeBufferPointer<Int32>,
                                   scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool = false) {
        let d = stream.headDim, n = slots.count
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 2 * n * d) { rows in
            let keys = rows.baseAddress!, values = keys + n * d
            rk_gather_rows(stream.keys, Int32(d), slots.baseAddress, Int32(n), keys)
            rk_gather_rows(stream.values, Int32(d), slots.baseAddress, Int32(n), values)
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: heads) { counts in
                counts.initialize(repeating: Int32(n))
                rk_attn_causal(queries, d, counts.baseAddress!, Int32(heads), keys, values, Int32(d), scale, output, d, batched ? 1 : 0)
            }
        }
    }

    private static func attend(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafePointer<Int32>?, count: Int,
                               scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool) {
        let d = stream.headDim
        withUnsafeTemporaryAllocation(of: Float.self, capacity: count) { scoreBuffer in
            withUnsafeTemporaryAllocation(of: UInt16.self, capacity: count + d) { halfBuffer in
                let scores = scoreBuffer.baseAddress!, q = halfBuffer.baseAddress!, probabilities = q + d
                rk_f32_to_f16(query, q, Int32(d))
                for j in 0..<count {
                    let slot = slots.map { Int($0[j]) } ?? j
                    scores[j] = rk_attn_dot(stream.keys + slot * d, q, Int32(d), batched ? 1 : 0) * scale
                }
                rk_attn_softmax(scores, Int32(count))
                rk_f32_to_f16(scores, probabilities, Int32(count))
                rk_attn_values(probabilities, stream.values, slots, Int32(count), Int32(d), output, batched ? 1 : 0)
            }
        }
    }

    /// Plain reference (standard-library Float16, Double sums, libm exp) for tests: agrees with the
    /// kernels to float rounding, not bit for bit.
    public static func denseReference(query: [Float], keys: [[Float]], values: [[Float]], scale: Float) -> [Float] {
        let q = query.map { Double(Float16($0)) }
        var scores = keys.map { k in zip(q, k).reduce(0.0) { $0 + $1.0 * Double(Float16($1.1)) } * Double(scale) }
        let m = scores.max() ?? 0
        scores = scores.map { Foundation.exp($0 - m) }
        let total = scores.reduce(0, +)
        var out = [Double](repeating: 0, count: q.count)
        for (p, v) in zip(scores, values) {
            for i in out.indices { out[i] += p / total * Double(Float16(v[i])) }
        }
        return out.map { Float($0) }
    }
}
