//! The dotted Burn module path (`encoder.attn_layers.0.conv1.weight`) that visitors and
//! mappers over the model keep while walking it.

/// Inside an `impl ModuleVisitor` or `impl ModuleMapper` for a type with a
/// `path: Vec<String>` field: keeps `path` at the module being walked.
macro_rules! track_module_path {
    () => {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
    };
}

pub(crate) use track_module_path;
