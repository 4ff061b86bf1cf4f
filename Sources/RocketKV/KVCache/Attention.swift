import Foundation
import CKernels

/// Exact attention of one query head over cached f16 rows.
///
/// As llama.cpp does with an f16 cache, the query is rounded to f16 before the products with K, and the
/// probabilities are rounded to f16 before the products with V.
public enum Attention {
    /// `output = softmax(q·Kᵀ·scale)·V` over the first `count` slots of `stream`.
    public static func dense(query: UnsafePointer<Float>, stream: KVStream, count: Int, scale: Float,
                             output: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        withUnsafeTemporaryAllocation(of: Float.self, capacity: count + d) { buffer in
            let q = buffer.baseAddress!, scores = q + d
            roundToHalf(query, into: q, count: d)
            for j in 0..<count { scores[j] = rk_dot_f16_f32(stream.keys + j * d, q, Int32(d)) * scale }
            Ops.softmax(scores, count: count)
            roundToHalf(scores, into: scores, count: count)
            output.initialize(repeating: 0, count: d)
            for j in 0..<count { rk_axpy_f16(scores[j], stream.values + j * d, output, Int32(d)) }
        }
    }

    /// The same over a chosen subset of slots (in any order).
    public static func sparse(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafeBufferPointer<Int32>,
                              scale: Float, output: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        let n = slots.count
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n + d) { buffer in
            let q = buffer.baseAddress!, scores = q + d
            roundToHalf(query, into: q, count: d)
            for (i, s) in slots.enumerated() { scores[i] = rk_dot_f16_f32(stream.keys + Int(s) * d, q, Int32(d)) * scale }
            Ops.softmax(scores, count: n)
            roundToHalf(scores, into: scores, count: n)
            output.initialize(repeating: 0, count: d)
            for (i, s) in slots.enumerated() { rk_axpy_f16(scores[i], stream.values + Int(s) * d, output, Int32(d)) }
        }
    }

    /// Plain reference of `dense` (Float16 arithmetic of the standard library, no SIMD) for tests.
    public static func denseReference(query: [Float], keys: [[Float]], values: [[Float]], scale: Float) -> [Float] {
        let q = query.map { Float(Float16($0)) }
        var scores = keys.map { k in zip(q, k).reduce(Float(0)) { $0 + $1.0 * Float(Float16($1.1)) } * scale }
        let m = scores.max() ?? 0
        scores = scores.map { expf($0 - m) }
        let total = scores.reduce(0, +)
        var out = [Float](repeating: 0, count: q.count)
        for (p, v) in zip(scores, values) {
            for i in out.indices { out[i] += p / total * Float(Float16(v[i])) }
        }
        return out
    }

    @inline(__always)
    static func roundToHalf(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: count) { half in
            rk_f32_to_f16(x, half.baseAddress!, Int32(count))
            rk_f16_to_f32(half.baseAddress!, y, Int32(count))
        }
    }
}
