"""A fourth CRM that lives only in the tests: an in-memory CRM with two objects, its adapter
package (settings model, plugin, schema file) and the controls the contract suite drives."""
