import Foundation
import XCTest

/// `--help` and `help <command>` print the usage text to stdout and exit 0, for the root and every command.
final class HelpTests: XCTestCase {
    func testHelpIsPrintedForEveryCommand() throws {
        let binary = BadInputTests.binary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else { throw XCTSkip("\(binary.path) is not built") }
        let commands = ["generate", "chat", "bench", "eval", "serve", "models", "methods"]
        for arguments in [["--help"], ["help"]] + commands.flatMap({ [[$0, "--help"], ["help", $0]] }) {
            let process = Process()
            process.executableURL = binary
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "\(arguments): \(stderr)")
            XCTAssertTrue(stdout.contains("USAGE: rocketkv"), "\(arguments) printed: \(stdout.prefix(200)) \(stderr.prefix(200))")
            if let command = arguments.first(where: commands.contains) {
                XCTAssertTrue(stdout.contains("USAGE: rocketkv \(command)"), "\(arguments) printed the wrong help: \(stdout.prefix(200))")
            }
        }
    }
}
