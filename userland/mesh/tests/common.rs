pub use havn_mesh::fixtures::*;
