import Foundation
import RocketKV
import XCTest

final class EvaluationTests: XCTestCase {
    func testPartialMatchIsLongestCommonSubstringOverKeyLength() {
        XCTAssertEqual(Passkey.partialMatch(response: "The key is 4823917.", key: "4823917"), 1)
        XCTAssertEqual(Passkey.partialMatch(response: "48239 and 17", key: "4823917"), 5.0 / 7.0, accuracy: 1e-12)
        XCTAssertEqual(Passkey.partialMatch(response: "no digits", key: "4823917"), 0)
    }

    func testNextTokenComparison() {
        let same = NextTokenComparison(reference: [1, 2, 3], candidate: [1, 2, 3], target: 2)
        XCTAssertTrue(same.sameTop1)
        XCTAssertEqual(same.kl, 0, accuracy: 1e-12)
        // NLL of token 2 under softmax([1, 2, 3]).
        XCTAssertEqual(same.negativeLogLikelihood, log(exp(1.0) + exp(2.0) + exp(3.0)) - 3, accuracy: 1e-9)
        let p = NextTokenComparison(reference: [0, Float(log(3.0))], candidate: [0, 0], target: 1)
        let expectedKL = 0.25 * log(0.25 / 0.5) + 0.75 * log(0.75 / 0.5)
        XCTAssertEqual(p.kl, expectedKL, accuracy: 1e-6)
        XCTAssertEqual(p.negativeLogLikelihood, log(2.0), accuracy: 1e-6)
        XCTAssertFalse(NextTokenComparison(reference: [0, 1], candidate: [1, 0], target: 0).sameTop1)
    }

    func testPredictionLinesHaveEveryKeyAndMetricsAverage() throws {
        func prediction(_ method: String, _ budget: Int?, _ score: Double) -> EvalPrediction {
            var p = EvalPrediction(task: "passkey", method: method, budget: budget, length: 1024, depth: 0.5, sample: 0,
                                   output: "x", expected: "y", score: score, promptTokens: 1000, statistics: KVStatistics())
            p.partial = score
            return p
        }
        let json = String(decoding: try JSONEncoder().encode(prediction("full", nil, 1)), as: UTF8.self)
        for key in ["task", "method", "budget", "length", "depth", "sample", "output", "expected", "score"] {
            XCTAssertTrue(json.contains("\"\(key)\":"), "missing \(key) in \(json)")
        }
        XCTAssertTrue(json.contains("\"budget\":null"))
        let metrics = EvalMetric.summarize([prediction("rocket", 128, 1), prediction("full", nil, 1), prediction("rocket", 128, 0)])
        XCTAssertEqual(metrics.map(\.method), ["rocket", "full"])
        XCTAssertEqual(metrics[0].accuracy, 50)
        XCTAssertEqual(metrics[0].count, 2)
        XCTAssertEqual(metrics[1].accuracy, 100)
    }

    func testStoreResumesFromItsFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("eval-\(UUID().uuidString)")
        let p = EvalPrediction(task: "passkey", method: "full", budget: nil, length: 512, depth: 0, sample: 0, output: "1234567",
                               expected: "1234567", score: 1, promptTokens: 510, statistics: KVStatistics())
        do {
            let store = try EvalStore(folder: folder)
            XCTAssertFalse(store.contains(p.id))
            try store.append(p)
        }
        let reopened = try EvalStore(folder: folder)
        XCTAssertTrue(reopened.contains(p.id))
        XCTAssertEqual(reopened.predictions.count, 1)
        try Data("not json\n".utf8).write(to: folder.appendingPathComponent("predictions.jsonl"))
        XCTAssertThrowsError(try EvalStore(folder: folder))
    }

    func testReportDrawsHeatmapsCurvesAndTables() {
        var predictions: [EvalPrediction] = []
        for (method, budget) in [("full", nil), ("rocket", 128), ("rocket", 256)] as [(String, Int?)] {
            for depth in [0.0, 1.0] {
                predictions.append(EvalPrediction(task: "passkey", method: method, budget: budget, length: 2048, depth: depth, sample: 0,
                                                  output: "", expected: "1", score: depth, promptTokens: 2040, statistics: KVStatistics()))
            }
        }
        let html = EvalReport.html(predictions: predictions, settings: [:])
        XCTAssertTrue(html.hasPrefix("<!doctype html>"))
        XCTAssertEqual(html.components(separatedBy: "<polyline").count - 1, 1, "one curve: rocket over its two budgets")
        XCTAssertEqual(html.components(separatedBy: "<rect").count - 1, 7, "three heatmaps of one length × two depths, and full's interval band")
        XCTAssertEqual(html.components(separatedBy: "<path class='ci'").count - 1, 2, "an interval bar on each of rocket's two points")
        XCTAssertEqual(html.components(separatedBy: "<rect class='ci'").count - 1, 1, "full's interval as a band")
        // One of two prompts found: 50 % with the Wilson interval of 1 in 2, 9.5–90.5 %.
        XCTAssertTrue(html.contains("<title>rocket @ 128: 50.0 % [9–91], n = 2, wilson</title>"))
        XCTAssertTrue(html.contains("<title>full: 50.0 % [9–91], n = 2, wilson</title>"))
        XCTAssertTrue(html.contains("rocket @ 256"))
        XCTAssertTrue(html.contains("<td>50.0</td>"))
    }

    func testIntervalsWilsonForProportionsBootstrapForMeans() {
        let wilson = ConfidenceInterval.wilson(successes: 17, n: 20)
        XCTAssertEqual(wilson.low, 63.958, accuracy: 1e-3)   // (values from the closed form, computed independently)
        XCTAssertEqual(wilson.high, 94.763, accuracy: 1e-3)
        XCTAssertEqual(ConfidenceInterval.wilson(successes: 0, n: 20).high, 16.113, accuracy: 1e-3)
        XCTAssertEqual(ConfidenceInterval.of([1, 1, 0]).method, "wilson")
        let scores = [0.25, 0.5, 0.5, 1, 0.75, 0, 0.25, 1]
        let a = ConfidenceInterval.of(scores), b = ConfidenceInterval.of(scores)
        XCTAssertEqual(a, b, "seeded: the same scores give the same interval")
        XCTAssertEqual(a.method, "bootstrap")
        XCTAssertLessThan(a.low, 53.125)
        XCTAssertGreaterThan(a.high, 53.125)
        XCTAssertGreaterThan(a.low, 20)
        XCTAssertLessThan(a.high, 85)
    }

    func testRulerMeansWithAndWithoutTasksFullCannotDo() {
        func p(_ task: String, _ method: String, _ score: Double, _ sample: Int) -> EvalPrediction {
            EvalPrediction(task: "ruler/\(task)", method: method, budget: method == "full" ? nil : 128, length: 4096, depth: nil, sample: sample,
                           output: "", expected: "", score: score, promptTokens: 4000, statistics: KVStatistics())
        }
        var predictions: [EvalPrediction] = []
        for sample in 0..<4 {
            predictions += [p("niah_single", "full", 1, sample), p("vt", "full", 0, sample),
                            p("niah_single", "rocket", sample < 2 ? 1 : 0, sample), p("vt", "rocket", 0.5, sample)]
        }
        let metrics = EvalMetric.summarize(predictions)
        func metric(_ task: String, _ method: String) -> EvalMetric { metrics.first { $0.task == task && $0.method == method }! }
        XCTAssertEqual(metric("ruler/mean", "full").accuracy, 50)
        XCTAssertEqual(metric("ruler/mean-solved", "full").accuracy, 100)
        XCTAssertEqual(metric("ruler/mean", "rocket").accuracy, 50)   // (50 + 50) / 2
        XCTAssertEqual(metric("ruler/mean-solved", "rocket").accuracy, 50)   // vt left out: full scores 0 there
        XCTAssertEqual(metric("ruler/mean-solved", "rocket").count, 4)
        XCTAssertEqual(metric("ruler/mean", "rocket").count, 8)
        XCTAssertEqual(metric("ruler/mean", "full").interval.low, 50, "every resample of constant tasks gives 50")
        XCTAssertEqual(metric("ruler/vt", "rocket").interval.method, "bootstrap")
    }

    func testPredictionIDsCarryTheConfiguration() throws {
        var settings = EvalSettings(task: "passkey", methods: ["full", "rocket"], budgets: [128], lengths: [2048], depths: [0.5], samples: 1,
                                    seed: 1, maxTokens: 16, planNewTokens: 128, continuation: 64, haystack: "paul-graham-essays",
                                    kvOptions: [:], model: "m")
        let plain = try settings.configuration(for: "rocket")
        settings.kvOptions = ["page-round": "nearest"]
        XCTAssertNotEqual(try settings.configuration(for: "rocket"), plain)
        XCTAssertTrue(try settings.configuration(for: "rocket").contains("kv-option page-round=nearest"))
        XCTAssertFalse(try settings.configuration(for: "full").contains("kv-option"), "full has no such option")
        XCTAssertTrue(plain.contains("engine=\(EvalSettings.engineVersion)") && plain.contains("first-token=compressed"))
        settings.seed = 2
        XCTAssertNotEqual(try settings.configuration(for: "full"), plain.replacingOccurrences(of: "rocket", with: "full"))
        var a = EvalPrediction(task: "passkey", method: "rocket", budget: 128, length: 2048, depth: 0.5, sample: 0, output: "", expected: "",
                               score: 0, promptTokens: 2040, statistics: KVStatistics())
        var b = a
        a.configuration = plain
        b.configuration = try settings.configuration(for: "rocket")
        XCTAssertNotEqual(a.id, b.id)
        b.configuration = plain
        b.plan = "RocketKV[A] S=2168 t=128"
        XCTAssertNotEqual(a.id, b.id)
    }

    /// `method+key=value` variants run beside the plain method (one prefill per prompt) with options of their
    /// own that override the sweep's `--kv-option`s; their predictions are separate cells.
    func testMethodVariantsCarryTheirOwnOptions() throws {
        let settings = EvalSettings(task: "passkey", methods: ["full", "rocket", "rocket+votes=shared+page=1"], budgets: [128], lengths: [2048],
                                    depths: [0.5], samples: 1, seed: 1, maxTokens: 16, planNewTokens: 128, continuation: 64,
                                    haystack: "paul-graham-essays", kvOptions: ["page": "2", "window": "16"], model: "m")
        XCTAssertEqual(try settings.runs().map(\.method), ["full", "rocket", "rocket+votes=shared+page=1"])
        XCTAssertEqual(try KVMethods.options(settings.kvOptions, for: "rocket+votes=shared+page=1"),
                       ["page": "1", "window": "16", "votes": "shared"])
        let variant = try settings.configuration(for: "rocket+votes=shared+page=1")
        XCTAssertTrue(variant.contains("kv-option page=1") && variant.contains("kv-option votes=shared") && variant.contains("kv-option window=16"))
        XCTAssertNotEqual(variant, try settings.configuration(for: "rocket"))
        for bad in ["rocket+votes", "rocket+nosuch=1", "rocket+page=1+page=2", "full+window=3", "nosuch+page=1", "rocket+=1"] {
            var s = settings
            s.methods = [bad]
            XCTAssertThrowsError(try s.runs(), bad)
        }
        XCTAssertNoThrow(try KVMethods.checkOptions(["votes": "shared"], usedBy: ["full", "rocket+page=1"]))
    }

    func testConfigurationsWrittenBeforeTheFirstTokenSwitchReadAsDense() throws {
        let old = #"{"task":"passkey","methods":["full"],"budgets":[128],"lengths":[2048],"depths":[0.5],"samples":4,"seed":1,"maxTokens":16,"planNewTokens":128,"continuation":64,"haystack":"paul-graham-essays","kvOptions":{},"model":"m"}"#
        let settings = try JSONDecoder().decode(EvalSettings.self, from: Data(old.utf8))
        XCTAssertEqual(settings.firstToken, .dense)
        XCTAssertEqual(settings.turns, 4)
        XCTAssertNil(settings.shard)
    }

    func testShardsSplitPromptsWhole() {
        XCTAssertNil(EvalShard("3/3"))
        XCTAssertNil(EvalShard("1"))
        XCTAssertNil(EvalShard("-1/2"))
        let shards = (0..<3).map { EvalShard("\($0)/3")! }
        for prompt in 0..<20 { XCTAssertEqual(shards.filter { $0.contains(prompt: prompt) }.count, 1) }
        XCTAssertEqual(shards[1].description, "1/3")
    }

    func testSettingsRejectLengthsBelowTheTaskMinimum() {
        var settings = EvalSettings(task: "ruler", methods: ["full"], budgets: [128], lengths: [64], depths: [0.5], samples: 1, seed: 1,
                                    maxTokens: 16, planNewTokens: 128, continuation: 64, haystack: "synthetic", kvOptions: [:], model: "m")
        XCTAssertThrowsError(try settings.validate(contextLength: nil)) { XCTAssertTrue("\($0)".contains("minimum of 512 tokens for ruler"), "\($0)") }
        settings.lengths = [512]
        XCTAssertNoThrow(try settings.validate(contextLength: nil))
        settings.task = "multiturn"
        settings.lengths = [500]
        XCTAssertThrowsError(try settings.validate(contextLength: nil)) { XCTAssertTrue("\($0)".contains("504"), "\($0)") }
        settings.lengths = [8100]
        XCTAssertThrowsError(try settings.validate(contextLength: 8192)) { XCTAssertTrue("\($0)".contains("leave room for 128"), "\($0)") }
    }

    /// Passkey and RULER take lengths up to the context (a "32K" prompt on a 32K model), cut to leave room for
    /// the answer; longer lengths, and other tasks, are still refused.
    func testPasskeyAndRulerCutLengthsAtTheContext() throws {
        var settings = EvalSettings(task: "passkey", methods: ["full"], budgets: [128], lengths: [32768], depths: [0.5], samples: 1, seed: 1,
                                    maxTokens: 16, planNewTokens: 128, continuation: 64, haystack: "synthetic", kvOptions: [:], model: "m")
        XCTAssertNoThrow(try settings.validate(contextLength: 32768))
        XCTAssertEqual(settings.promptTokens(length: 32768, contextLength: 32768), 32768 - 128)
        XCTAssertEqual(settings.promptTokens(length: 32700, contextLength: 32768), 32768 - 128)
        XCTAssertEqual(settings.promptTokens(length: 16384, contextLength: 32768), 16384, "a length that fits is not cut")
        settings.lengths = [32769]
        XCTAssertThrowsError(try settings.validate(contextLength: 32768)) { XCTAssertTrue("\($0)".contains("leave room"), "\($0)") }
        settings.lengths = [200]
        XCTAssertThrowsError(try settings.validate(contextLength: 200), "a cut below the task's minimum is refused")
        settings.task = "ruler"
        settings.lengths = [32768]
        XCTAssertNoThrow(try settings.validate(contextLength: 32768))
        settings.task = "fidelity"
        XCTAssertEqual(settings.promptTokens(length: 32768, contextLength: 32768), 32768)
        XCTAssertThrowsError(try settings.validate(contextLength: 32768)) { XCTAssertTrue("\($0)".contains("passkey and ruler accept"), "\($0)") }
    }
}
