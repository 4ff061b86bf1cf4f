import Foundation
import XCTest
import RocketKV

// TEMPORARY experiment harness (not committed): decode-step attention time of `hsa` vs `full` over a fixed cache.
final class HSAMicrobenchExp: XCTestCase {
    func testHSADecodeTime() throws {
        guard let cacheText = ProcessInfo.processInfo.environment["RK_EXP_CACHE"], let cache = Int(cacheText) else { throw XCTSkip("experiment") }
        let shape = AttentionShape(layers: 30, queryHeads: 9, kvHeads: 3, headDim: 64)
        let steps = Int(ProcessInfo.processInfo.environment["RK_EXP_STEPS"] ?? "200")!
        var rng = SystemRandomNumberGenerator()
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
        let method = ProcessInfo.processInfo.environment["RK_EXP_METHOD"] ?? "hsa"
        let context = KVMethodContext(shape: shape, budget: 256, promptLength: cache, maxNewTokens: steps)
        let policy = try KVMethods.make(method, context: context)
        let q = random(cache * 9 * 64), k = random(cache * 3 * 64).map { $0 * 2 }, v = random(cache * 3 * 64)
        var out = [Float](repeating: 0, count: cache * 9 * 64)
        for l in 0..<30 {
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { op in
                policy.prefill(layer: l, AttentionInput(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!, tokens: cache, firstPosition: 0), output: op.baseAddress!)
            } } } }
        }
        policy.finishPrefill()
        let dq = random(steps * 30 * 9 * 64), dk = random(steps * 30 * 3 * 64).map { $0 * 2 }, dv = random(steps * 30 * 3 * 64)
        var o = [Float](repeating: 0, count: 9 * 64)
        let start = DispatchTime.now().uptimeNanoseconds
        for s in 0..<steps {
            for l in 0..<30 {
                let i = s * 30 + l
                dq.withUnsafeBufferPointer { qp in dk.withUnsafeBufferPointer { kp in dv.withUnsafeBufferPointer { vp in o.withUnsafeMutableBufferPointer { op in
                    policy.decode(layer: l, AttentionInput(queries: qp.baseAddress! + i * 576, keys: kp.baseAddress! + i * 192, values: vp.baseAddress! + i * 192, tokens: 1, firstPosition: cache + s), output: op.baseAddress!)
                } } } }
            }
        }
        let ns = Double(DispatchTime.now().uptimeNanoseconds - start) / Double(steps)
        print(String(format: "EXP method=%@ mode=%@ cache=%d us_per_token=%.1f us_per_layer=%.2f plan=%@", method, ProcessInfo.processInfo.environment["RK_EXP_HSA"] ?? "phased", cache, ns / 1000, ns / 30000, (policy.planDescription ?? "-")))
    }
}
