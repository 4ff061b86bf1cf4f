import Foundation
import XCTest
import RocketKV

/// Random queries, keys and values fed through KV policies layer by layer, with the whole history kept
/// for brute-force references.
final class RandomFeed {
    let shape: AttentionShape
    private var state: UInt64
    /// `[layer]`: queries `[token][queryHead][d]`, keys and values `[token][kvHead][d]` of every token so far.
    private(set) var queries: [[Float]], keys: [[Float]], values: [[Float]]
    private(set) var tokens = 0
    let keyScale: Float

    init(shape: AttentionShape, seed: UInt64, keyScale: Float = 2) {
        self.shape = shape
        state = seed
        self.keyScale = keyScale
        queries = Array(repeating: [], count: shape.layers)
        keys = queries
        values = queries
    }

    private func uniform() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24) * 2 - 1
    }

    /// Generates `count` tokens for every layer and runs them through each policy (prefill or decode).
    /// Returns `[policy][layer]` outputs `[count][queryHead][d]`.
    @discardableResult
    func step(_ policies: [KVPolicy], count: Int, decode: Bool) -> [[[Float]]] {
        let d = shape.headDim, qh = shape.queryHeads, kh = shape.kvHeads
        var outputs = [[[Float]]](repeating: [], count: policies.count)
        for layer in 0..<shape.layers {
            let q = (0..<(count * qh * d)).map { _ in uniform() * keyScale }
            let k = (0..<(count * kh * d)).map { _ in uniform() * keyScale }
            let v = (0..<(count * kh * d)).map { _ in uniform() }
            queries[layer] += q
            keys[layer] += k
            values[layer] += v
            for (i, policy) in policies.enumerated() {
                var out = [Float](repeating: .nan, count: count * qh * d)
                q.withUnsafeBufferPointer { qp in
                    k.withUnsafeBufferPointer { kp in
                        v.withUnsafeBufferPointer { vp in
                            let input = AttentionInput(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!,
                                                       tokens: count, firstPosition: tokens)
                            out.withUnsafeMutableBufferPointer {
                                if decode { policy.decode(layer: layer, input, output: $0.baseAddress!) }
                                else { policy.prefill(layer: layer, input, output: $0.baseAddress!) }
                            }
                        }
                    }
                }
                outputs[i].append(out)
            }
        }
        tokens += count
        return outputs
    }

    func query(_ layer: Int, _ token: Int, _ head: Int) -> [Float] {
        let d = shape.headDim, o = (token * shape.queryHeads + head) * d
        return Array(queries[layer][o..<(o + d)])
    }
    func key(_ layer: Int, _ token: Int, _ kvHead: Int) -> [Float] {
        let d = shape.headDim, o = (token * shape.kvHeads + kvHead) * d
        return Array(keys[layer][o..<(o + d)])
    }
    func value(_ layer: Int, _ token: Int, _ kvHead: Int) -> [Float] {
        let d = shape.headDim, o = (token * shape.kvHeads + kvHead) * d
        return Array(values[layer][o..<(o + d)])
    }

    /// `q·k·scale` with the key as cached (f16) and the query rounded to f16 as attention does (or, with
    /// `f16Query: false`, as SnapKV's scoring takes it: f32, §16.5), in Double.
    func logit(_ layer: Int, query token: Int, head: Int, key j: Int, f16Query: Bool = true) -> Double {
        let q = query(layer, token, head), k = key(layer, j, head / shape.groupSize)
        return zip(q, k).reduce(0.0) { $0 + Double(f16Query ? Float(Float16($1.0)) : $1.0) * Double(Float16($1.1)) } * Double(shape.scale)
    }

    /// Exact attention of the query of `token`/`head` over the tokens `positions` (reference arithmetic).
    func attention(_ layer: Int, query token: Int, head: Int, positions: [Int]) -> [Float] {
        let g = head / shape.groupSize
        return Attention.denseReference(query: query(layer, token, head), keys: positions.map { key(layer, $0, g) },
                                        values: positions.map { value(layer, $0, g) }, scale: shape.scale)
    }
}

/// Indices of the `k` largest values (value descending, then lower index), ascending — written independently
/// of `KVSelect` for references.
func referenceTop(_ values: [Double], _ k: Int) -> [Int] {
    Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k)).sorted()
}

func softmax(_ x: [Double]) -> [Double] {
    let m = x.max() ?? 0
    let e = x.map { Foundation.exp($0 - m) }
    let s = e.reduce(0, +)
    return e.map { $0 / s }
}

func assertClose(_ a: [Float], _ b: [Float], tolerance: Float, _ message: @autoclosure () -> String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, message(), file: file, line: line)
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssert(worst <= tolerance, "max difference \(worst) > \(tolerance) " + message(), file: file, line: line)
}

extension Array where Element == Float {
    /// Output row of `head` (token 0 of a decode step).
    func head(_ h: Int, d: Int) -> [Float] { Array(self[(h * d)..<((h + 1) * d)]) }
}
