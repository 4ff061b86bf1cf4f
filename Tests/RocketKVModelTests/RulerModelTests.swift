import Foundation
import RocketKV
import XCTest

/// RULER-style prompts with the real tokenizer: each task fits its token length, hides its answers in the
/// text, is reproducible from the seed, and scores by RULER's "all" string match.
final class RulerModelTests: XCTestCase {
    func testEveryTaskFitsHidesItsAnswersAndIsReproducible() throws {
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let haystack = try Haystack.paulGraham()
        for task in Ruler.tasks {
            var a = Xoshiro256StarStar(seed: 3), b = Xoshiro256StarStar(seed: 3)
            let sample = try Ruler.sample(task: task, haystack: haystack, tokens: 1024, tokenizer: tokenizer, using: &a)
            let again = try Ruler.sample(task: task, haystack: haystack, tokens: 1024, tokenizer: tokenizer, using: &b)
            XCTAssertEqual(sample.prompt, again.prompt, task)
            let count = tokenizer.encode(sample.prompt, addSpecial: true, parseSpecial: false).count
            XCTAssertLessThanOrEqual(count, 1024, task)
            XCTAssertGreaterThan(count, 900, task)
            XCTAssertFalse(sample.answers.isEmpty, task)
            if task != "fwe" {  // fwe's answers are the most frequent codes, present by construction but drawn at random
                for answer in sample.answers { XCTAssertTrue(sample.prompt.contains(answer), "\(task): \(answer) not in the prompt") }
            }
            XCTAssertEqual(Ruler.score(output: sample.answers.joined(separator: " ").uppercased(), answers: sample.answers), 1, task)
            XCTAssertEqual(Ruler.score(output: "", answers: sample.answers), 0, task)
        }
        let multivalue = try { var r = Xoshiro256StarStar(seed: 5)
            return try Ruler.sample(task: "niah_multivalue", haystack: haystack, tokens: 800, tokenizer: tokenizer, using: &r) }()
        XCTAssertEqual(multivalue.answers.count, 4)
        XCTAssertEqual(Ruler.score(output: multivalue.answers[0] + " and " + multivalue.answers[2], answers: multivalue.answers), 0.5)
        XCTAssertThrowsError(try { var r = Xoshiro256StarStar(seed: 1)
            return try Ruler.sample(task: "qa_1", haystack: haystack, tokens: 800, tokenizer: tokenizer, using: &r) }())
    }

    /// At each task's minimum length (`EvalSettings.minimumLength`) every prompt still fits: lengths are honoured
    /// down to the minimum and rejected below it.
    func testEveryTaskFitsItsMinimumLength() throws {
        let tokenizer = try Tokenizer(gguf: TestModel.file)
        let haystack = try Haystack.paulGraham()
        func minimum(_ task: String) -> Int {
            EvalSettings(task: task, methods: ["full"], budgets: [], lengths: [], depths: [], samples: 1, seed: 1, maxTokens: 16,
                         planNewTokens: 128, continuation: 64, haystack: "", kvOptions: [:], model: "").minimumLength
        }
        for seed in UInt64(1)...3 {
            for task in Ruler.tasks {
                var rng = Xoshiro256StarStar(seed: seed)
                let sample = try Ruler.sample(task: task, haystack: haystack, tokens: minimum("ruler"), tokenizer: tokenizer, using: &rng)
                XCTAssertLessThanOrEqual(tokenizer.encode(sample.prompt, addSpecial: true, parseSpecial: false).count, minimum("ruler"), task)
            }
            var rng = Xoshiro256StarStar(seed: seed)
            let session = MultiturnSession.make(haystack: haystack, tokens: minimum("multiturn"), turns: 4, tokenizer: tokenizer, using: &rng)
            XCTAssertLessThanOrEqual(session.firstPrompt.count, minimum("multiturn") - 3 * 40)
            let key = Passkey.randomKey(using: &rng)
            XCTAssertLessThanOrEqual(Passkey.prompt(haystack: haystack, tokens: minimum("passkey"), depth: 0.5, key: key, tokenizer: tokenizer).tokens.count,
                                     minimum("passkey"))
        }
    }
}
