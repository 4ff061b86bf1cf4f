import Foundation
import RocketKV

/// HSA's selection (ROCKETKV.md §4.3) written plainly, one step after the other for the whole group, with the
/// same float operations in the same order as the engine's split steps: the engine must agree bit for bit.
enum HSAReference {
    struct Result: Equatable {
        var slots: [Int32]
        var dims: [Int]
        var scores: [Float]          // [head][page]
        var temperatures: [Float]
        var omega: [Float]
    }

    static func select(queries q: [Float], groupSize G: Int, metadata: PageMetadata, k1: Int, k2: Int) -> Result {
        let d = metadata.headDim, pages = metadata.pages
        var a = [Float](repeating: 0, count: d), sum = a
        for h in 0..<G { for i in 0..<d { a[i] += abs(q[h * d + i]); sum[i] += q[h * d + i] } }
        let dims = KVSelect.rankedTop(a, min(max(1, k1), d))
        var scores = [Float](repeating: 0, count: G * pages)
        for dim in dims {
            for h in 0..<G {
                for p in 0..<pages {
                    let bound = sum[dim] > 0 ? metadata.maximum(page: p, dim: dim) : metadata.minimum(page: p, dim: dim)
                    // The strip kernel (f16 and int8 strips) fuses each multiply-add; the f32 path rounds the product first.
                    let i = h * pages + p, c = q[h * d + dim]
                    scores[i] = metadata.precision != .f32 ? scores[i].addingProduct(c, bound) : scores[i] + c * bound
                }
            }
        }
        var temperatures = [Float](repeating: 0, count: G)
        for h in 0..<G {
            var selected: Float = 0, total: Float = 0
            for dim in dims { selected += abs(q[h * d + dim]) }
            for i in 0..<d { total += abs(q[h * d + i]) }
            temperatures[h] = total > 0 ? (Float(d) * selected / total).squareRoot() : Float(d).squareRoot()
        }
        var omega = [Float](repeating: 0, count: pages)
        for h in 0..<G {
            let inv = 1 / temperatures[h]
            var m = -Float.infinity
            for p in 0..<pages { m = max(m, scores[h * pages + p] * inv) }
            let e = (0..<pages).map { expf(scores[h * pages + $0] * inv - m) }
            var z: Double = 0
            for p in 0..<pages { z += Double(metadata.tokens(inPage: p)) * Double(e[p]) }
            let scale = Float(1 / (z * Double(G)))
            for p in 0..<pages { omega[p] += e[p] * scale }
        }
        let want = min(k2, metadata.tokens)
        var slots: [Int32] = []
        for p in KVSelect.rankedTop(omega, pages) where slots.count < want {
            for s in (p * metadata.pageSize)..<(p * metadata.pageSize + min(metadata.tokens(inPage: p), want - slots.count)) {
                slots.append(Int32(s))
            }
        }
        return Result(slots: slots, dims: dims, scores: scores, temperatures: temperatures, omega: omega)
    }
}
