"""A local Salesforce org: OAuth and SOAP login, REST query/queryAll, Bulk API 2.0, sObject rows
and Collections, Composite, SOQL parsed with a real grammar, and validation rules.
"""
