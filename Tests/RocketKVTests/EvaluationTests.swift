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
        XCTAssertEqual(html.components(separatedBy: "<rect").count - 1, 6, "three heatmaps of one length × two depths")
        XCTAssertTrue(html.contains("rocket @ 256"))
        XCTAssertTrue(html.contains("<td>50.0</td>"))
    }
}
