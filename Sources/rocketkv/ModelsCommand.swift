import ArgumentParser
import Foundation
import RocketKV

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List the models --model accepts by name, and whether each is cached.")

    @Flag(name: .long, help: "One JSON object per line instead of a table.")
    var json = false

    func run() throws {
        let rows = ModelStore.catalog.map { model -> [String: String] in
            ["name": model.name, "architecture": model.architecture, "size": String(format: "%.1f MB", Double(model.size) / 1e6),
             "summary": model.summary, "source": "PyPI " + (model.parts.count == 1 ? "\(model.parts[0].wheel)==\(model.parts[0].version)"
                                         : "\(model.parts[0].wheel) + \(model.parts.count - 1) more parts"),
             "cached": ModelStore.isCached(model) ? ModelStore.cachedFile(of: model).path : "no"]
        }
        if json {
            for row in rows { print(String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self)) }
            return
        }
        let columns = ["name", "architecture", "size", "cached", "source", "summary"]
        let widths = columns.map { c in max(c.count, rows.map { $0[c]!.count }.max() ?? 0) }
        func line(_ values: [String]) -> String {
            zip(values, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        print(line(columns))
        for row in rows { print(line(columns.map { row[$0]! })) }
    }
}
