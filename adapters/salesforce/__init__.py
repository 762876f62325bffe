"""The Salesforce adapter on simple-salesforce: REST and Bulk API 2.0 reads with closed-range
cursors, sObject Collections writes, and the error table.
"""
