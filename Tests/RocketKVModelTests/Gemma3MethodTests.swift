import Foundation
import RocketKV
import XCTest

/// Every KV method on Gemma 3's mixed layers: the method runs on the 3 global layers, the 15 sliding-window
/// layers keep their own window, and the statistics cover both.
final class Gemma3MethodTests: XCTestCase {
    func testEveryMethodRunsOnMixedLayers() throws {
        let engine = Engine(model: try loadModel(file: TestModel.gemmaFile))
        let model = engine.model, c = model.config
        let fixture = try TestModel.fixture("gemma3/logits_long.json", as: LogitsFixture.self)
        let prompt = Array(fixture.tokens.prefix(700)), steps = 8
        let snapshot = try engine.prefillSnapshot(prompt)
        let window = try XCTUnwrap(c.slidingWindow)
        let globalLayers = c.slidingLayers.filter { !$0 }.count, slidingLayers = c.layers - globalLayers
        XCTAssertEqual(globalLayers, 3)
        // What the sliding layers hold after the prompt: the last window − 1 tokens, or up to twice the window.
        var fullStored = 0
        for name in KVMethods.all.map(\.name) where name != "every-other" {
            let budget: Int? = try KVMethods.named(name).needsBudget ? 128 : nil
            let policy = try KVMethods.make(name, context: KVMethodContext(layers: c.layerAttention, budget: budget,
                                                                         promptLength: prompt.count, maxNewTokens: steps))
            let layered = try XCTUnwrap(policy as? LayeredKV, name)
            XCTAssertEqual(layered.caches.count, 2, name)
            snapshot.replay(into: policy)
            let session = snapshot.session(model: model, policy: policy)
            var logits = snapshot.lastLogits
            for _ in 0..<steps {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                logits = Array(try session.decode(next))
                XCTAssert(logits.allSatisfy(\.isFinite), name)
            }
            let stats = policy.statistics
            let sliding = layered.caches.compactMap { $0 as? SlidingWindowKV }.first!.statistics
            XCTAssertLessThanOrEqual(sliding.storedTokens, slidingLayers * c.kvHeads * 2 * window, name)
            XCTAssertEqual(sliding.bytesReadLastStep, slidingLayers * c.kvHeads * window * 4 * c.headDim, name)
            XCTAssertGreaterThan(stats.storedTokens, sliding.storedTokens, name)
            if name == "full" { fullStored = stats.storedBytes - sliding.storedBytes }
            if ["rocket", "snapkv", "streaming", "h2o"].contains(name) {
                XCTAssertLessThan(stats.storedBytes - sliding.storedBytes, fullStored, "\(name) keeps less than full on the global layers")
            }
        }
    }

    /// Stage 1 on Gemma 3 with the default votes (shared over the 3 global layers, a hybrid model) keeps every
    /// token of a passkey needle in every global layer at 4K, budget 256; with each layer's own votes (the paper's
    /// rule) the deeper global layers evict it on this prompt (results/stage1-votes-2026-12-03/).
    func testStageOneKeepsTheNeedleInEveryGlobalLayer() throws {
        let file = TestModel.gemmaFile
        let tokenizer = try Tokenizer(gguf: file)
        let engine = Engine(model: try loadModel(file: file))
        let key = "9677326"
        let prompt = Passkey.prompt(haystack: try Haystack.paulGraham(), tokens: 4096, depth: 0.25, key: key, tokenizer: tokenizer)
        let tokens = Array(prompt.tokens.dropLast())
        let before = prompt.text.components(separatedBy: Passkey.needle(key: key))[0]
        let start = tokenizer.encode(before, addSpecial: true, parseSpecial: false).count
        let needle = start..<(start + tokenizer.encode(Passkey.needle(key: key), addSpecial: false, parseSpecial: false).count)
        let snapshot = try engine.prefillSnapshot(tokens)
        func needleKept(_ options: [String: String]) throws -> [Int] {
            let policy = try KVMethods.make("rocket", context: KVMethodContext(layers: engine.model.config.layerAttention, budget: 256,
                                                                                promptLength: tokens.count, maxNewTokens: 128, options: options))
            snapshot.replay(into: policy)
            let rocket = try XCTUnwrap((policy as? LayeredKV)?.caches.first { $0 is RocketPolicy } as? RocketPolicy)
            return rocket.inspectableStreams.map { stream in
                let kept = Set((0..<stream.count).map { Int(stream.positions[$0]) })
                return needle.filter(kept.contains).count
            }
        }
        XCTAssertEqual(try needleKept([:]), [needle.count, needle.count, needle.count])
        XCTAssertLessThan(try needleKept(["votes": "layer"]).min()!, needle.count)
    }
}
