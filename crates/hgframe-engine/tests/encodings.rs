//! The server's content-encoding preference: configurable, and checked when the server
//! is built (an unknown name, or a level one of the listed profiles lacks, is a typed
//! error naming the setting).
#![cfg(all(feature = "zstd", feature = "deflate"))]

use hgframe_engine::{EngineConfig, Registry, Server};

#[test]
fn the_preference_order_is_kept_and_unknown_names_are_refused() {
    let mut config = EngineConfig::default();
    assert_eq!(config.encodings(), ["zstd-8mb", "identity"]);
    config.set_encodings(&["deflate", "zstd-8mb", "identity"]);
    assert_eq!(config.encodings(), ["deflate", "zstd-8mb", "identity"]);
    assert!(config.validate().is_ok());
    assert!(Server::new(Registry::new(), config).is_ok());

    for bad in [&["deflate", "gzip"][..], &["zlib"][..], &["Deflate"][..]] {
        let mut config = EngineConfig::default();
        config.set_encodings(bad);
        let e = Server::new(Registry::new(), config).unwrap_err();
        assert_eq!(e.setting(), "encodings", "{bad:?}");
        assert!(e.reason().contains("not a content encoding"), "{e}");
    }
}

#[test]
fn a_level_deflate_lacks_is_refused_when_deflate_is_listed() {
    // zstd takes level 12, deflate does not (0 to 9); the default list has no deflate.
    let mut config = EngineConfig::default();
    config.reactor_mut().set_level(12);
    assert!(config.validate().is_ok());
    config.set_encodings(&["deflate", "zstd-8mb", "identity"]);
    let e = config.validate().unwrap_err();
    assert_eq!(e.setting(), "level");
    assert!(e.reason().contains("deflate"), "{e}");
    config.reactor_mut().set_level(9);
    assert!(config.validate().is_ok());
}
