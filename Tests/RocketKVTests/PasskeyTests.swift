import Foundation
import RocketKV
import XCTest

final class PasskeyTests: XCTestCase {
    func haystack() throws -> Haystack {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("haystack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "alpha beta\ngamma".write(to: folder.appendingPathComponent("b.txt"), atomically: true, encoding: .utf8)
        try "one two three ".write(to: folder.appendingPathComponent("a.txt"), atomically: true, encoding: .utf8)
        try "ignored".write(to: folder.appendingPathComponent("c.md"), atomically: true, encoding: .utf8)
        return try Haystack(folder: folder)
    }

    func testHaystackOrderAndCycling() throws {
        let h = try haystack()
        // Files concatenated in sorted order with no separator: "three " + "alpha" stay separate words.
        XCTAssertEqual(h.words, ["one", "two", "three", "alpha", "beta", "gamma"])
        XCTAssertEqual(h.prefix(words: 8), ["one", "two", "three", "alpha", "beta", "gamma", "one", "two"])
    }

    func testPromptLayout() throws {
        let p = Passkey.prompt(haystack: try haystack(), words: 4, depth: 0.5, key: "0123456")
        XCTAssertEqual(p, Passkey.instruction + "one two The pass key is 0123456. Remember it. 0123456 is the pass key. three alpha "
                       + "\nWhat is the pass key? The pass key is ")
        XCTAssertTrue(Passkey.prompt(haystack: try haystack(), words: 3, depth: 0, key: "1").hasPrefix(Passkey.instruction + " The pass key is 1."))
    }

    func testScoring() {
        XCTAssertEqual(Passkey.exactMatch(response: "4823917. In other words", key: "4823917"), 1)
        XCTAssertEqual(Passkey.exactMatch(response: "The pass key is 482391", key: "4823917"), 0)
        // Exact match is the key as a whole number; a longer run of digits holding it only counts as a substring.
        XCTAssertEqual(Passkey.exactMatch(response: "66689352", key: "6689352"), 0)
        XCTAssertEqual(Passkey.substringMatch(response: "66689352", key: "6689352"), 1)
        XCTAssertEqual(Passkey.exactMatch(response: "is 6689352, remember 66689352", key: "6689352"), 1)
        XCTAssertEqual(Passkey.exactMatch(response: "key:0123456.", key: "0123456"), 1)
        XCTAssertEqual(Passkey.substringMatch(response: "The pass key is 482391", key: "4823917"), 0)
        XCTAssertEqual(Passkey.normalize("The Pass-Key, is  AN answer!"), "pass key is answer")
        var rng = Xoshiro256StarStar(seed: 1)
        let key = Passkey.randomKey(using: &rng)
        XCTAssertEqual(key.count, 7)
        XCTAssertTrue(key.allSatisfy(\.isNumber))
    }
}
