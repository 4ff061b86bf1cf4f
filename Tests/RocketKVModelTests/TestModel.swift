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

    /// Decodes a committed fixture (Tests/RocketKVModelTests/Fixtures/NAME).
    static func fixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        guard let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: name])
        }
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }
}
