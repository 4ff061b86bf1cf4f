import Foundation
import RocketKV

/// Shared access to the default model and the committed llama.cpp fixtures.
enum TestModel {
    static let path: String = {
        do { return try ModelStore.defaultModelPath(log: { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }) }
        catch { fatalError("cannot fetch the default model: \(error)") }
    }()

    static let file: GGUFFile = {
        do { return try GGUFFile(path: path) } catch { fatalError("cannot open the default model: \(error)") }
    }()

    /// Gemma 3 270M from the catalog (fetched and verified on first use).
    static let gemmaFile: GGUFFile = {
        do {
            let path = try ModelStore.path(of: ModelStore.catalogModel(named: "gemma3-270m")!,
                                           log: { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) })
            return try GGUFFile(path: path)
        } catch { fatalError("cannot fetch Gemma 3 270M: \(error)") }
    }()

    /// The names of the committed fixtures in `folder` whose names start with `prefix`.
    static func fixtureNames(in folder: String, prefix: String) -> [String] {
        guard let url = Bundle.module.url(forResource: "Fixtures/" + folder, withExtension: nil),
              let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return [] }
        return names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted().map { folder + "/" + $0 }
    }

    /// Decodes a committed fixture (Tests/RocketKVModelTests/Fixtures/NAME).
    static func fixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        guard let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: name])
        }
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }
}
