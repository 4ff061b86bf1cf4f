import Foundation
import RocketKV
import XCTest

// DIAGNOSTIC (run as a temporary test, not committed under Tests/): how well does HSA's page estimate pick the
// tokens exact attention weighs, on each model's global layers, after stage 1 (votes=shared)?
// For the first decode step (the held-back last prompt token) of passkey prompts at 4K, per global layer:
// the exact group-mean attention ω over stage 1's tokens, HSA's k2 selection for several (P, k1), and
//   mass  = Σ_{j ∈ selection} ω_j   (1 = the selection holds all the attention),
//   top   = the same for the exact top-k2 (the best any k2-token selection can do),
//   needle = needle tokens in the selection / needle tokens kept by stage 1.
final class ZZHSARecallDiagTests: XCTestCase {
    /// Forwards to the model's cache and keeps the queries of the last decode step per model layer.
    final class QueryTap: KVPolicy {
        let inner: KVPolicy, layers: [LayerAttention]
        var queries: [Int: [Float]] = [:]
        init(_ inner: KVPolicy, layers: [LayerAttention]) { self.inner = inner; self.layers = layers }
        func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) { inner.prefill(layer: layer, input, output: output) }
        func finishPrefill() { inner.finishPrefill() }
        func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
            queries[layer] = Array(UnsafeBufferPointer(start: input.queries, count: input.tokens * layers[layer].queryHeads * layers[layer].headDim))
            inner.decode(layer: layer, input, output: output)
        }
        var statistics: KVStatistics { inner.statistics }
    }

    func testRecall() throws {
        for (name, file) in [("gemma3-270m", TestModel.gemmaFile), ("smollm2-135m", TestModel.file)] {
            let tokenizer = try Tokenizer(gguf: file)
            let engine = Engine(model: try loadModel(file: file))
            let c = engine.model.config
            let layers = c.layerAttention
            let globals = layers.indices.filter { layers[$0].kind == .global }
            let haystack = try Haystack.paulGraham()
            for (depth, key) in [(0.25, "9677326"), (0.5, "9971359"), (0.75, "5253485")] {
                let prompt = Passkey.prompt(haystack: haystack, tokens: 4096, depth: depth, key: key, tokenizer: tokenizer)
                let tokens = Array(prompt.tokens.dropLast())
                let before = prompt.text.components(separatedBy: Passkey.needle(key: key))[0]
                let start = tokenizer.encode(before, addSpecial: true, parseSpecial: false).count
                let needle = Set(start..<(start + tokenizer.encode(Passkey.needle(key: key), addSpecial: false, parseSpecial: false).count))
                let snapshot = try engine.prefillSnapshot(tokens)
                let policy = try KVMethods.make("rocket", context: KVMethodContext(layers: layers, budget: 256, promptLength: tokens.count,
                                                                                    maxNewTokens: 128, options: ["votes": "shared"]))
                let tap = QueryTap(policy, layers: layers)
                snapshot.replay(into: tap)
                _ = try snapshot.session(model: engine.model, policy: tap).decode(prompt.tokens.last!)
                let method: KVPolicy = (policy as? LayeredKV)?.caches.first { !($0 is SlidingWindowKV) } ?? policy
                let rocket = method as! RocketPolicy
                let plan = rocket.plan, shape = rocket.shape, d = shape.headDim, G = shape.groupSize
                for (local, l) in globals.enumerated() {
                    let stream = rocket.inspectableStreams[local * shape.kvHeads]   // KV group 0
                    let n = stream.count
                    let q = Array(tap.queries[l]!.prefix(G * d))                    // the query heads of group 0
                    var keys = [Float](repeating: 0, count: n * d)
                    keys.withUnsafeMutableBufferPointer { b in for j in 0..<n { stream.key(j, into: b.baseAddress! + j * d) } }
                    var omega = [Double](repeating: 0, count: n)
                    for h in 0..<G {
                        let z = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(keys[j * d + $1]) } * Double(shape.scale) }
                        let m = z.max()!, e = z.map { exp($0 - m) }, total = e.reduce(0, +)
                        for j in 0..<n { omega[j] += e[j] / total / Double(G) }
                    }
                    let k2 = min(plan.k2, n)
                    let top = omega.sorted(by: >).prefix(k2).reduce(0, +)
                    let keptNeedle = (0..<n).filter { needle.contains(Int(stream.positions[$0])) }
                    var line = "DIAG \(name) depth \(depth) layer \(l): n \(n) k2 \(k2) top-k2 mass \(String(format: "%.3f", top)); needle kept \(keptNeedle.count)/\(needle.count)"
                    for (P, k1) in [(plan.pageSize, plan.k1), (1, plan.k1), (plan.pageSize, d), (1, d), (2, plan.k1 * 2 / plan.pageSize)] {
                        let meta = PageMetadata(headDim: d, pageSize: P, precision: .f16)
                        for j in 0..<n { meta.append(slot: j, of: stream) }
                        let selection = q.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: meta, k1: k1, k2: k2) }
                        let mass = selection.slots.reduce(0.0) { $0 + omega[Int($1)] }
                        let hits = keptNeedle.filter { Set(selection.slots.map(Int.init)).contains($0) }.count
                        line += String(format: " | P%d k1=%d mass %.3f needle %d", P, k1, mass, hits)
                    }
                    print(line)
                }
            }
        }
    }
}
