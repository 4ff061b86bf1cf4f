import Foundation
import CKernels

/// A policy whose cached rows tests and tools can inspect.
public protocol KVStreamInspectable: AnyObject {
    /// Every stream the policy holds now; each cached row lives in exactly one of them.
    var inspectableStreams: [KVStream] { get }
}

/// Deterministic selections shared by the baseline policies.
public enum KVSelect {
    /// Indices of the `k` largest of `values` (value descending, ties to the lower index; NaN counts as −∞),
    /// returned in ascending index order. `k ≥ count` selects everything.
    public static func topIndices(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        rankedTop(values, k).sorted()
    }

    /// The same `k` indices, best first.
    public static func rankedTop(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        let k = max(0, min(k, values.count))
        guard k > 0 else { return [] }
        return [Int32](unsafeUninitializedCapacity: k) { out, initialized in
            initialized = Int(rk_top_indices(values.baseAddress!, Int32(values.count), Int32(k), out.baseAddress!))
        }.map(Int.init)
    }

    public static func rankedTop(_ values: [Float], _ k: Int) -> [Int] {
        values.withUnsafeBufferPointer { rankedTop($0, k) }
    }

    public static func topIndices(_ values: [Float], _ k: Int) -> [Int] {
        values.withUnsafeBufferPointer { topIndices($0, k) }
    }
}

/// Budget arithmetic shared by the baselines (project defaults of spec §16.7).
enum BaselineBudget {
    /// `round` as the spec means it: to nearest, halves away from zero, in Double.
    static func round(_ x: Double) -> Int { Int(x.rounded(.toNearestOrAwayFromZero)) }
}

extension Attention {
    /// Exact attention like `dense`/`sparse` (bit-identical output) that also returns the softmax
    /// probabilities (f32, before the f16 rounding applied for the products with V) in `probabilities[0..<count]`.
    static func withProbabilities(query: UnsafePointer<Float>, stream: KVStream, slots: UnsafePointer<Int32>?, count: Int,
                                  scale: Float, output: UnsafeMutablePointer<Float>, batched: Bool,
                                  probabilities: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: count + d) { halfBuffer in
            let q = halfBuffer.baseAddress!, halfProbabilities = q + d
            rk_f32_to_f16(query, q, Int32(d))
            for j in 0..<count {
                let slot = slots.map { Int($0[j]) } ?? j
                probabilities[j] = rk_attn_dot(stream.keys + slot * d, q, Int32(d), batched ? 1 : 0) * scale
            }
            rk_attn_softmax(probabilities, Int32(count))
            rk_f32_to_f16(probabilities, halfProbabilities, Int32(count))
            rk_attn_values(halfProbabilities, stream.values, slots, Int32(count), Int32(d), output, batched ? 1 : 0)
        }
    }

    /// The attention logits `q·k·scale` of the first `count` slots, in decode arithmetic (f16 query,
    /// llama.cpp's single-token summation order): the very logits `dense` computes for one token.
    static func logits(query: UnsafePointer<Float>, stream: KVStream, count: Int, scale: Float,
                       into scores: UnsafeMutablePointer<Float>) {
        let d = stream.headDim
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: d) { halfBuffer in
            let q = halfBuffer.baseAddress!
            rk_f32_to_f16(query, q, Int32(d))
            for j in 0..<count { scores[j] = rk_attn_dot(stream.keys + j * d, q, Int32(d), 0) * scale }
        }
    }
}

extension KVStatistics {
    /// Adds the tokens and allocated bytes of `streams`, and (when `read`) all their rows as read.
    mutating func add(_ streams: [KVStream], read: Bool) {
        for s in streams {
            storedTokens += s.count
            storedBytes += s.allocatedBytes
            if read { bytesReadLastStep += s.count * s.headDim * 2 * 2 }
        }
    }
}

/// Half-float bits of a stored key element, as Float.
@inline(__always) func halfToFloat(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
